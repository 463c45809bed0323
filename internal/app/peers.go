package app

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/internal/auth"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/internal/grpcserver"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
)

// Replicas that forward reveals of volatile tokens to each other
// (config volatile.peers; internal/grpcserver/peer.go).

// peerConns are the connections to the other replicas.
type peerConns struct {
	peers *grpcserver.Peers
	conns []*grpc.ClientConn
}

func (p *peerConns) close() {
	if p == nil {
		return
	}
	for _, c := range p.conns {
		c.Close()
	}
}

// volatileOptions are the vault's volatile options, with the forwarder
// when volatile.peers lists replicas. Connections are made lazily (a peer
// that is not up yet is no reason not to start).
func volatileOptions(cfg config.Config) (vault.VolatileOptions, *peerConns, error) {
	opts := cfg.Volatile.Options()
	if len(cfg.Volatile.Peers) == 0 {
		return opts, nil, nil
	}
	opts.HolderID = config.HolderIDOf(cfg.Replica.ID)
	dial, err := forwardDialOptions(cfg.Volatile.Forward)
	if err != nil {
		return opts, nil, err
	}
	pc := &peerConns{}
	byHolder := map[string]grpcserver.Peer{}
	for i, p := range cfg.Volatile.Peers {
		if p.ReplicaID == cfg.Replica.ID {
			continue
		}
		conn, err := grpc.NewClient(p.Address, dial...)
		if err != nil {
			pc.close()
			return opts, nil, fmt.Errorf("volatile.peers[%d].address: %w", i, err)
		}
		pc.conns = append(pc.conns, conn)
		byHolder[config.HolderIDOf(p.ReplicaID)] = grpcserver.Peer{Replica: p.ReplicaID, Client: pb.NewReplicaPeerClient(conn)}
	}
	pc.peers = grpcserver.NewPeers(cfg.Replica.ID, byHolder, cfg.Volatile.Forward.Timeout, cfg.Logger.With("component", "volatile-peers"))
	opts.Peers = pc.peers
	cfg.Logger.Info("volatile tokens: forwarding reveals to peers", "holder_id", opts.HolderID, "peers", len(byHolder))
	return opts, pc, nil
}

// forwardDialOptions: TLS with the configured CA (and client certificate),
// or plaintext (config validation allows it to loopback only), and the API
// key, which the client's credentials refuse to send in plaintext beyond
// loopback.
func forwardDialOptions(f config.VolatileForwardConfig) ([]grpc.DialOption, error) {
	var opts []grpc.DialOption
	if f.CAFile == "" {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("volatile.forward.ca_file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, errors.New("volatile.forward.ca_file: no PEM certificate in the file")
		}
		tc := &tls.Config{RootCAs: roots, ServerName: f.ServerName, MinVersion: tls.VersionTLS12}
		if f.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("volatile.forward.cert_file: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	}
	if f.APIKeyFile != "" {
		b, err := os.ReadFile(f.APIKeyFile)
		if err != nil {
			return nil, fmt.Errorf("volatile.forward.api_key_file: %w", err)
		}
		key := strings.TrimSpace(string(b))
		clear(b)
		if !strings.HasPrefix(key, auth.APIKeyPrefix) {
			// Never quote the file: it may hold a secret of another shape.
			return nil, fmt.Errorf("volatile.forward.api_key_file: not an API key (%s…, from tokenvault apikey new)", auth.APIKeyPrefix)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(client.APIKeyCredentials(key)))
	}
	return append(opts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<20))), nil
}
