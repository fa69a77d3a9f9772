//go:build image

package main

// The container image built from the Dockerfile, checked without a
// container runtime: podman here builds a scratch image but cannot run
// one. `make check-image` builds the image and runs this test with
// NOTIFY_TEST_IMAGE naming it.

import (
	"archive/tar"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The image's layout, as the Dockerfile makes it.
const (
	imageBinary  = "usr/local/bin/notifyd"
	imageWeb     = "usr/share/notify/web"
	imageCerts   = "etc/ssl/certs/ca-certificates.crt"
	imageDataDir = "var/lib/notify"
	imageUID     = 65532
)

// podmanInspect is the part of `podman image inspect` the test reads.
type podmanInspect struct {
	Config struct {
		User         string
		Entrypoint   []string
		Cmd          []string
		Env          []string
		WorkingDir   string
		ExposedPorts map[string]struct{}
	}
	Healthcheck *struct {
		Test     []string
		Interval time.Duration
		Timeout  time.Duration
		Retries  int
	}
}

// TestContainerImage checks the image's configuration, then exports its
// files (podman save) and runs the notifyd found there, with the image's
// environment, on free loopback ports in dev mode: /healthz, the web app
// and `notifyd healthcheck` (the image's HEALTHCHECK) must answer, and
// SIGTERM must stop it.
func TestContainerImage(t *testing.T) {
	image := os.Getenv("NOTIFY_TEST_IMAGE")
	podman, err := exec.LookPath("podman")
	if err != nil || image == "" {
		msg := "podman and NOTIFY_TEST_IMAGE (an image built from the Dockerfile) are needed: run make check-image"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}

	out, err := exec.Command(podman, "image", "inspect", image).Output()
	if err != nil {
		t.Fatalf("podman image inspect %s: %v", image, err)
	}
	var inspected []podmanInspect
	if err := json.Unmarshal(out, &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("podman image inspect: %v (%d images)\n%s", err, len(inspected), out)
	}
	cfg := inspected[0]
	if cfg.Config.User != "65532:65532" {
		t.Errorf("User %q, want 65532:65532 (numeric, not root: a scratch image has no /etc/passwd)", cfg.Config.User)
	}
	if want := []string{"/" + imageBinary}; !slices.Equal(cfg.Config.Entrypoint, want) || len(cfg.Config.Cmd) != 0 {
		t.Errorf("Entrypoint %q Cmd %q, want %q and no Cmd", cfg.Config.Entrypoint, cfg.Config.Cmd, want)
	}
	for _, p := range []string{"9090/tcp", "8080/tcp"} {
		if _, ok := cfg.Config.ExposedPorts[p]; !ok {
			t.Errorf("port %s not exposed (ExposedPorts %v)", p, cfg.Config.ExposedPorts)
		}
	}
	if cfg.Config.WorkingDir != "/"+imageDataDir {
		t.Errorf("WorkingDir %q, want /%s", cfg.Config.WorkingDir, imageDataDir)
	}
	// Exec form: the image has no shell for CMD-SHELL.
	hc := cfg.Healthcheck
	if want := []string{"CMD", "/" + imageBinary, "healthcheck"}; hc == nil || !slices.Equal(hc.Test, want) {
		t.Errorf("Healthcheck %+v, want test %q (was the image built with --format docker?)", hc, want)
	} else if hc.Interval <= 0 || hc.Timeout <= 0 || hc.Timeout > healthcheckTimeout || hc.Retries <= 0 {
		t.Errorf("Healthcheck interval %v timeout %v retries %d: want all set, and a timeout no longer than notifyd's own %v",
			hc.Interval, hc.Timeout, hc.Retries, healthcheckTimeout)
	}
	env := map[string]string{}
	for _, kv := range cfg.Config.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for k, want := range map[string]string{
		"NOTIFY_GRPC_ADDR": ":9090", "NOTIFY_HTTP_ADDR": ":8080",
		"NOTIFY_DATA_DIR": "/" + imageDataDir, "NOTIFY_WEB_DIR": "/" + imageWeb,
	} {
		if env[k] != want {
			t.Errorf("Env %s=%q, want %q", k, env[k], want)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	root := t.TempDir()
	files := exportImage(t, podman, image, root)
	for _, p := range []string{imageBinary, imageWeb + "/index.html", imageCerts} {
		if h, ok := files[p]; !ok || h.Typeflag != tar.TypeReg {
			t.Errorf("image has no file /%s", p)
		}
	}
	if h, ok := files[imageDataDir]; !ok || h.Typeflag != tar.TypeDir || h.Uid != imageUID {
		t.Errorf("/%s: %+v, want a directory owned by uid %d, where notifyd writes its SQLite inbox", imageDataDir, h, imageUID)
	}
	if h := files[imageBinary]; h != nil && h.Mode&0o111 == 0 {
		t.Errorf("/%s mode %o, not executable", imageBinary, h.Mode)
	}
	bin := filepath.Join(root, imageBinary)
	requireStatic(t, bin)
	if t.Failed() {
		t.FailNow()
	}

	// The exported notifyd, with the image's environment but loopback
	// ports and directories of the test's own.
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	env["NOTIFY_GRPC_ADDR"], env["NOTIFY_HTTP_ADDR"] = grpcAddr, httpAddr
	env["NOTIFY_DATA_DIR"], env["NOTIFY_WEB_DIR"] = t.TempDir(), filepath.Join(root, imageWeb)
	var environ []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOTIFY_") {
			environ = append(environ, kv)
		}
	}
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	cmd := exec.Command(bin, "--dev")
	cmd.Env = environ
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the image's notifyd: %v", err)
	}
	exited := make(chan struct{})
	var waitErr error // valid once exited is closed
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	defer func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("notifyd output:\n%s", logs.String())
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := awaitOK(ctx, "http://"+httpAddr+"/healthz", exited); err != nil {
		t.Fatalf("the image's notifyd: %v", err)
	}
	if body, err := get(ctx, "http://"+httpAddr+"/"); err != nil || !strings.Contains(body, "<html") {
		t.Errorf("GET / (the web app copied into the image): %v, body %.200q", err, body)
	}
	healthcheck := func() int {
		t.Helper()
		hc := exec.Command(bin, "healthcheck")
		hc.Env = environ
		out, err := hc.CombinedOutput()
		var exit *exec.ExitError
		switch {
		case err == nil:
			return 0
		case errors.As(err, &exit):
			t.Logf("notifyd healthcheck: exit %d: %s", exit.ExitCode(), out)
			return exit.ExitCode()
		}
		t.Fatalf("notifyd healthcheck: %v", err)
		return -1
	}
	if code := healthcheck(); code != 0 {
		t.Errorf("the image's HEALTHCHECK against a running notifyd: exit %d, want 0", code)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("notifyd after SIGTERM: %v, want a clean exit", waitErr)
		}
	case <-time.After(startTimeout):
		t.Fatalf("notifyd still running %v after SIGTERM", startTimeout)
	}
	if code := healthcheck(); code != 1 {
		t.Errorf("the image's HEALTHCHECK with notifyd stopped: exit %d, want 1", code)
	}
}

// exportImage writes the image's files under root, through `podman save`
// (no container runtime needed), and returns the tar header of every path.
func exportImage(t *testing.T, podman, image, root string) map[string]*tar.Header {
	t.Helper()
	archive := filepath.Join(t.TempDir(), "image.tar")
	if out, err := exec.Command(podman, "save", "--quiet", "--format", "docker-archive", "-o", archive, image).CombinedOutput(); err != nil {
		t.Fatalf("podman save: %v\n%s", err, out)
	}
	layers := map[string][]byte{}
	var manifest []struct{ Layers []string }
	readTar(t, archive, func(h *tar.Header, r io.Reader) {
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "manifest.json" {
			if err := json.Unmarshal(b, &manifest); err != nil {
				t.Fatalf("manifest.json: %v", err)
			}
			return
		}
		layers[h.Name] = b
	})
	if len(manifest) != 1 || len(manifest[0].Layers) == 0 {
		t.Fatalf("podman save: manifest %+v, want one image with layers", manifest)
	}
	files := map[string]*tar.Header{}
	dir := filepath.Join(t.TempDir(), "layers")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, name := range manifest[0].Layers {
		layer := filepath.Join(dir, strings.ReplaceAll(name, "/", "_"))
		if err := os.WriteFile(layer, layers[name], 0o600); err != nil {
			t.Fatalf("layer %d (%s): %v", i, name, err)
		}
		readTar(t, layer, func(h *tar.Header, r io.Reader) {
			name := strings.TrimSuffix(path.Clean(strings.TrimPrefix(h.Name, "./")), "/")
			if name == "." || strings.HasPrefix(name, "../") || strings.Contains(path.Base(name), ".wh.") {
				t.Fatalf("layer %d: unexpected entry %q (a scratch image has no whiteouts)", i, h.Name)
			}
			files[name] = h
			dst := filepath.Join(root, filepath.FromSlash(name))
			switch h.Typeflag {
			case tar.TypeDir:
				if err := os.MkdirAll(dst, 0o755); err != nil {
					t.Fatal(err)
				}
			case tar.TypeReg:
				if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
					t.Fatal(err)
				}
				f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o755|0o600)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(f, r); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	return files
}

// readTar calls fn for every entry of the tar file at name.
func readTar(t *testing.T, name string, fn func(*tar.Header, io.Reader)) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		fn(h, tr)
	}
}

// requireStatic fails unless bin is an ELF executable with no program
// interpreter and no dynamic section: it must run in an empty image.
func requireStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s is dynamically linked (program header %v): build it with CGO_ENABLED=0", bin, p.Type)
		}
	}
}

// awaitOK polls url until it answers 200, the process ends (exited is
// closed), or ctx ends.
func awaitOK(ctx context.Context, url string, exited <-chan struct{}) error {
	var last error
	for {
		_, err := get(ctx, url)
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-exited:
			return errors.New("notifyd exited before " + url + " answered")
		case <-ctx.Done():
			return errors.Join(last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// get returns the body of a 200 answer to GET url.
func get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), errors.New(url + ": " + resp.Status)
	}
	return string(b), nil
}
