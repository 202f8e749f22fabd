package bus

import "crypto/tls"

// ClientTLS is the TLS configuration DialOptions presents (the CA that
// verifies the servers, and the client certificate), for a connection
// nats.go does not make: presence's probe of a peer's route port, which
// requires TLS when the nodes have certificates. nil when opts set no TLS.
func ClientTLS(opts Options) (*tls.Config, error) {
	if opts.TLSCA == "" && opts.TLSCert == "" {
		return nil, nil
	}
	return tlsConfig(opts)
}
