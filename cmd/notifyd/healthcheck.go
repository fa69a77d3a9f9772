package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/maxloyalty/notify/internal/node"
)

// healthcheckTimeout bounds one `notifyd healthcheck`, the same as the
// image's HEALTHCHECK --timeout.
const healthcheckTimeout = 3 * time.Second

// healthcheck GETs /healthz on the HTTP port of the notifyd that cfg
// describes, on this machine, and returns nil on 200 OK. It is the image's
// HEALTHCHECK: a scratch image has no shell and no curl, so notifyd probes
// itself, reading the same flags, NOTIFY_* variables and config file as
// the server it checks.
func healthcheck(ctx context.Context, cfg node.Config) error {
	cfg = cfg.Defaults()
	addr, err := localAddr(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	scheme, client := "http", &http.Client{}
	if cfg.TLSCertFile != "" {
		// The certificate names the public host, not the loopback
		// address dialled here, and the answer is a status code that
		// carries nothing to protect: the probe does not verify it.
		scheme = "https"
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	}
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	url := scheme + "://" + addr + "/healthz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: GET %s: %s", url, resp.Status)
	}
	return nil
}

// localAddr turns a listen address into one to dial on this machine: an
// empty or unspecified host (":8080", "0.0.0.0:8080", "[::]:8080") becomes
// the loopback address of its family; a named host is kept.
func localAddr(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("healthcheck: http-addr %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port), nil
}
