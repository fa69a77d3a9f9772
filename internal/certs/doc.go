// Package certs serves a TLS certificate from a certificate and key file,
// reloading it when the files change, so a renewed certificate (cert-manager,
// certbot, a mounted Kubernetes secret) is picked up without a restart.
//
// New loads the pair once and fails if it does not parse. Run polls both
// files' modification time and size; when either changed and the pair
// parses, the new certificate replaces the old one atomically; when it does
// not (a half-written renewal, a key that does not match), the old
// certificate stays, the failure is logged, and the next change is tried
// again. Handshakes already under way keep the certificate they started
// with.
//
// SelfSigned writes a fresh self-signed pair, for tests and local setups.
//
// Concurrency: GetCertificate and TLSConfig are safe for concurrent use,
// also while Run or Reload replaces the certificate; they take no lock.
// Run must be called at most once at a time; Reload may be called from
// any goroutine.
package certs
