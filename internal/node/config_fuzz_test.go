package node

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// FuzzConfigFile writes arbitrary bytes as a config file, binds a fresh
// flag set, applies the file, then fills in the defaults and validates, as
// notifyd does. Nothing may panic, and every error must say where it comes
// from: ApplyFile's name the file and line, Validate's (one per line when
// joined) name a setting.
func FuzzConfigFile(f *testing.F) {
	for _, seed := range []string{
		"",
		"# a comment only\n",
		"grpc-addr = 127.0.0.1:9090\nhttp-addr = 127.0.0.1:8080\ndev = true\n",
		"jwt-secret = \"0123456789abcdef0123456789abcdef\"\nbroker = memory\n",
		"jwt-secret = short\n",
		"history = guest=50/5m,admin=5000/1h\n",
		"history = guest=-1/5m\n",
		"history = nokind=1/1s\n",
		"queue-bytes = 1\nlog-level = loud\nlog-format = xml\nbroker = kafka\n",
		"reconnect-delay-min = 10s\nreconnect-delay-max = 1s\n",
		"min-ping-interval = 1h\nkeepalive-time = 1s\n",
		"tls-cert-file = cert.pem\n",
		"publish-rate = NaN\nconn-rate = -Inf\npublish-burst = -5\n",
		"publish-rate = 1e308\nconn-rate = 1e300\n",
		"max-connections = 99999999999999999999999\n",
		"jwt-leeway = -1h\nheartbeat-interval = 0\n",
		"allowed-origins = *, https://a.example ,,\n",
		"dev = maybe\n",
		"config = other.conf\n",
		"unknown-setting = 1\n",
		"= value\n",
		"no equals sign\n",
		"  dev=true  \r\n\t# indented comment\r\n",
		"dev = true\ndev = false\n",
		"web-dir = \"\"\"\n",
		"\x00\xff = \xfe\n",
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := os.CreateTemp(dir, "notifyd-*.conf")
		if err != nil {
			t.Fatal(err)
		}
		path := file.Name()
		defer os.Remove(path)
		if _, err := file.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := file.Close(); err != nil {
			t.Fatal(err)
		}

		fs := flag.NewFlagSet("notifyd", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var cfg Config
		if err := cfg.BindFlags(fs); err != nil {
			t.Fatalf("BindFlags: %v (is a NOTIFY_* variable set in the environment?)", err)
		}
		if err := ApplyFile(fs, path); err != nil {
			if !lineError(path).MatchString(err.Error()) {
				t.Fatalf("ApplyFile error %q does not name %s and a line", err, filepath.Base(path))
			}
			return
		}
		err = cfg.Defaults().Validate()
		if err == nil {
			return
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if !namesSetting(fs, line) {
				t.Fatalf("Validate error %q (in %q) names no setting", line, err)
			}
		}
	})
}

// lineError matches an ApplyFile error about a line of path.
func lineError(path string) *regexp.Regexp {
	return regexp.MustCompile(`^config file ` + regexp.QuoteMeta(path) + `:[1-9][0-9]*: `)
}

// namesSetting reports whether a Validate error line starts with the name
// of settings (flags of fs, comma-separated) or "jwt" followed by ": ", and,
// for "jwt", names a jwt flag after it.
func namesSetting(fs *flag.FlagSet, line string) bool {
	head, rest, ok := strings.Cut(line, ": ")
	if !ok {
		return false
	}
	if head == "jwt" {
		return strings.Contains(rest, "jwt-secret")
	}
	for _, name := range strings.Split(head, ", ") {
		if fs.Lookup(name) == nil {
			return false
		}
	}
	return true
}
