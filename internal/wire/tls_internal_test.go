package wire

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"

	"github.com/maxloyalty/notify/internal/certs"
)

// TLSListener wraps l in TLS with ALPN h2 and a self-signed certificate
// for 127.0.0.1, and returns it with the pool a client trusts it with.
// (Exported to the package's external tests too.)
func TLSListener(t testing.TB, l net.Listener) (net.Listener, *x509.CertPool) {
	t.Helper()
	certFile, keyFile, pool, err := certs.SelfSigned(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}}), pool
}
