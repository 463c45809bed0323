package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
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
// returns a target for it, a function that stops it and its process id
// (its CPU is read from /proc). With TLS on, the child serves an ephemeral
// self-signed certificate that only this client trusts. extra are more
// arguments of "tvbench echo" (-delay).
func startEchoProcess(c *common, opts []grpc.DialOption, extra ...string) (t loadgen.Target, stop func(), pid int, err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, 0, fmt.Errorf("echo process: %w", err)
	}
	scfg, eopts, err := echoTLS(c, opts)
	if err != nil {
		return nil, nil, 0, err
	}
	args := append([]string{"echo", "-listen", "127.0.0.1:0", "-exit-on-stdin-eof"}, extra...)
	tmp := ""
	defer func() { // until the child owns them, the files are ours to remove
		if err != nil && tmp != "" {
			os.RemoveAll(tmp)
		}
	}()
	if scfg != nil {
		if tmp, err = os.MkdirTemp("", "tvbench-echo-"); err != nil {
			return nil, nil, 0, err
		}
		if err = writeServerPEM(scfg.Certificates[0], tmp); err != nil {
			return nil, nil, 0, err
		}
		args = append(args, "-tls-cert", filepath.Join(tmp, "cert.pem"), "-tls-key", filepath.Join(tmp, "key.pem"))
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), echoChildEnv+"=1")
	stdin, err := cmd.StdinPipe() // closing it stops the child, even if we die
	if err != nil {
		return nil, nil, 0, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, nil, 0, err
	}
	if err = cmd.Start(); err != nil {
		return nil, nil, 0, fmt.Errorf("echo process: %w", err)
	}

	ready := make(chan string, 1)
	exited := make(chan struct{})
	var lastLine string // written before exited is closed
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), echoReady); ok {
				select {
				case ready <- a:
				default:
				}
			} else {
				lastLine = sc.Text()
			}
		}
		cmd.Wait()
	}()
	stop = func() {
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
	var addr string
	select {
	case addr = <-ready:
	case <-exited:
		stop()
		return nil, nil, 0, fmt.Errorf("echo process exited: %s", lastLine)
	case <-time.After(10 * time.Second):
		stop()
		return nil, nil, 0, errors.New("echo process: not serving after 10s")
	}
	if t, err = loadgen.NewGRPCTarget("echo", addr, c.p.Connections, eopts); err != nil {
		stop()
		return nil, nil, 0, err
	}
	return t, stop, cmd.Process.Pid, nil
}

// startEchoInProcess serves the echo from this process (-echo inprocess).
func startEchoInProcess(c *common, opts []grpc.DialOption) (loadgen.Target, func(), error) {
	scfg, eopts, err := echoTLS(c, opts)
	if err != nil {
		return nil, nil, err
	}
	var sopts []grpc.ServerOption
	if scfg != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(scfg)))
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

// echoTLS returns, when TLS is on, the echo's server configuration (an
// ephemeral self-signed certificate, so handshakes and record encryption
// cost the same as against tokenvault) and opts plus credentials that
// trust it; with TLS off, nil and opts.
func echoTLS(c *common, opts []grpc.DialOption) (*tls.Config, []grpc.DialOption, error) {
	if !c.tls.On() {
		return nil, opts, nil
	}
	scfg, ccfg, err := ephemeralTLS(c.tls)
	if err != nil {
		return nil, nil, err
	}
	return scfg, append(append([]grpc.DialOption(nil), opts...), grpc.WithTransportCredentials(credentials.NewTLS(ccfg))), nil
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
