package main

import (
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDevWithSecretRefused: notifyd --dev --jwt-secret (flag or
// environment) exits at start with an error naming both settings, and
// never serves: dev mode would mint admin and service tokens with the
// real secret at POST /dev/token.
func TestDevWithSecretRefused(t *testing.T) {
	t.Parallel()
	const secret = "a-real-secret-of-at-least-32-bytes-0123456789"
	for _, tc := range []struct {
		name string
		args []string
		env  []string
	}{
		{"flags", []string{"--dev", "--jwt-secret", secret}, nil},
		{"environment", []string{"--dev"}, []string{"NOTIFY_JWT_SECRET=" + secret}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append(tc.args, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir", t.TempDir())
			cmd, out := command(t, args, tc.env...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(startTimeout):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("notifyd still running %v after starting with --dev and a secret; output:\n%s", startTimeout, out.String())
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() <= 0 {
				t.Errorf("exit = %v, want a non-zero exit status", err)
			}
			if s := out.String(); !strings.Contains(s, "dev, jwt-secret: ") || strings.Contains(s, "notifyd serving") {
				t.Errorf("output %q: want a config error naming dev and jwt-secret, and no serving", s)
			}
			if strings.Contains(out.String(), secret) {
				t.Error("the output contains the secret")
			}
		})
	}
}

// TestDevModeWarns: notifyd --dev logs at WARN, once, at start, that it
// accepts and mints tokens signed with the public dev secret.
func TestDevModeWarns(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(startTimeout):
		t.Fatalf("notifyd still running %v after SIGTERM", startTimeout)
	}
	var warns []string
	for _, line := range strings.Split(d.out.String(), "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "dev mode") {
			warns = append(warns, line)
		}
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "public dev secret") || !strings.Contains(warns[0], "/dev/token") {
		t.Errorf("dev-mode WARN lines %q, want one saying the public dev secret is accepted and minted at /dev/token\noutput:\n%s", warns, d.out.String())
	}
}
