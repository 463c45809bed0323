package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tokenvault/tokenvault/bench/echo"
	"github.com/tokenvault/tokenvault/bench/loadgen"
)

// The echo baseline runs, by default, as a separate process on loopback
// (this executable, "tvbench echo"), because tokenvault is one: the
// server's goroutines then compete with the load generator's through the
// operating system, as they do against tokenvault. An echo inside the load
// generator's own process shares its Go scheduler instead (no wake-ups
// across processes) and, measured on a 2-core machine, was more than twice
// as fast as the same echo in its own process: a baseline nobody's server
// can match. "-echo inprocess" keeps that variant for comparison.

// echoChildEnv marks the child process, so a test binary re-executed as
// the child runs the echo command instead of the tests (see TestMain).
const echoChildEnv = "TVBENCH_ECHO_CHILD"

const echoReady = "tvbench echo: serving the no-op TokenVault API on "

// startEchoProcess starts "tvbench echo" on a free loopback port and
// returns a target for it and a function that stops it. With TLS on, the
// child serves an ephemeral self-signed certificate that only this client
// trusts.
func startEchoProcess(c *common, opts []grpc.DialOption) (loadgen.Target, func(), error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("echo process: %w", err)
	}
	args := []string{"echo", "-listen", "127.0.0.1:0", "-exit-on-stdin-eof"}
	tmp := ""
	eopts := opts
	if c.tls.On() {
		if tmp, err = os.MkdirTemp("", "tvbench-echo-"); err != nil {
			return nil, nil, err
		}
		scfg, ccfg, err := ephemeralTLS(c.tls)
		if err == nil {
			err = writeServerPEM(scfg.Certificates[0], tmp)
		}
		if err != nil {
			os.RemoveAll(tmp)
			return nil, nil, err
		}
		args = append(args, "-tls-cert", filepath.Join(tmp, "cert.pem"), "-tls-key", filepath.Join(tmp, "key.pem"))
		eopts = append(append([]grpc.DialOption(nil), opts...), grpc.WithTransportCredentials(credentials.NewTLS(ccfg)))
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), echoChildEnv+"=1")
	stdin, err := cmd.StdinPipe() // closing it stops the child, even if we die
	if err != nil {
		os.RemoveAll(tmp)
		return nil, nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		os.RemoveAll(tmp)
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(tmp)
		return nil, nil, fmt.Errorf("echo process: %w", err)
	}
	exited := make(chan struct{})
	stop := func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if tmp != "" {
			os.RemoveAll(tmp)
		}
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		var last string
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), echoReady); ok {
				addr <- a
			} else {
				last = sc.Text()
			}
		}
		cmd.Wait()
		if last != "" {
			addr <- "error: " + last
		}
		close(exited)
	}()
	var a string
	select {
	case a = <-addr:
	case <-exited:
		select {
		case a = <-addr:
		default:
			a = "error: exited"
		}
	case <-time.After(10 * time.Second):
		a = "error: not ready after 10s"
	}
	if msg, bad := strings.CutPrefix(a, "error: "); bad {
		stop()
		return nil, nil, fmt.Errorf("echo process: %s", msg)
	}
	t, err := loadgen.NewGRPCTarget("echo", a, c.p.Connections, eopts)
	if err != nil {
		stop()
		return nil, nil, err
	}
	return t, stop, nil
}

// startEchoInProcess serves the echo from this process (-echo inprocess).
func startEchoInProcess(c *common, opts []grpc.DialOption) (loadgen.Target, func(), error) {
	var sopts []grpc.ServerOption
	eopts := opts
	if c.tls.On() {
		scfg, ccfg, err := ephemeralTLS(c.tls)
		if err != nil {
			return nil, nil, err
		}
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(scfg)))
		eopts = append(append([]grpc.DialOption(nil), opts...), grpc.WithTransportCredentials(credentials.NewTLS(ccfg)))
	}
	gs, addr, err := echo.Listen("127.0.0.1:0", sopts...)
	if err != nil {
		return nil, nil, err
	}
	t, err := loadgen.NewGRPCTarget("echo", addr, c.p.Connections, eopts)
	if err != nil {
		gs.Stop()
		return nil, nil, err
	}
	return t, gs.Stop, nil
}

// writeServerPEM writes the certificate and key of cert to dir (0600).
func writeServerPEM(cert tls.Certificate, dir string) error {
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600)
}

// watchStdin cancels when stdin reaches end of file: the parent closed
// the pipe, or died.
func watchStdin(cancel context.CancelFunc) {
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
}
