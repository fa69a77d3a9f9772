package channel

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// httpOptions shape the HTTP client of a sender.
type httpOptions struct {
	// timeout bounds a whole request: connect, TLS, request, response headers and body.
	timeout time.Duration
	// rootCAs replaces the system roots when set (tests, private CAs).
	rootCAs *x509.CertPool
	// allowPrivate lets the client reach loopback, private and link-local addresses.
	allowPrivate bool
}

// newHTTPClient returns a client that speaks HTTP/2 where the server offers it, never
// follows redirects (a provider's 3xx is an answer, and a redirect could lead a
// user-supplied target elsewhere), uses no proxy from the environment, and refuses
// non-public addresses unless allowed.
func newHTTPClient(o httpOptions) *http.Client {
	dialer := &net.Dialer{Timeout: o.timeout, KeepAlive: 30 * time.Second}
	if !o.allowPrivate {
		dialer.Control = refusePrivate
	}
	tr := &http.Transport{
		DialContext:            dialer.DialContext,
		TLSClientConfig:        &tls.Config{RootCAs: o.rootCAs, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    o.timeout,
		ResponseHeaderTimeout:  o.timeout,
		MaxIdleConnsPerHost:    8,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   o.timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// refusePrivate is a net.Dialer Control that refuses addresses inside the deployment:
// checked on the resolved address, so a public name resolving to a private address is
// refused too.
func refusePrivate(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefusedAddress, err)
	}
	if !publicAddr(ap.Addr()) {
		return fmt.Errorf("%w: %s is not a public address", ErrRefusedAddress, ap.Addr())
	}
	return nil
}

var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsGlobalUnicast() && !a.IsPrivate() && !sharedAddressSpace.Contains(a)
}

func isCertificateError(err error) bool {
	var (
		verr *tls.CertificateVerificationError
		uerr x509.UnknownAuthorityError
		herr x509.HostnameError
		cerr x509.CertificateInvalidError
	)
	return errors.As(err, &verr) || errors.As(err, &uerr) || errors.As(err, &herr) || errors.As(err, &cerr)
}
