package node_test

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/maxloyalty/notify/internal/node"
)

// nativeSettings are the native port's per-connection settings of a Config.
type nativeSettings struct {
	Idle, Age, Grace   time.Duration
	Streams            int
	Window, ConnWindow int
	HeaderList         int
}

func nativeOf(c node.Config) nativeSettings {
	return nativeSettings{
		Idle: c.MaxConnectionIdle, Age: c.MaxConnectionAge, Grace: c.MaxConnectionAgeGrace,
		Streams: c.MaxConcurrentStreams, Window: c.InitialWindowSize, ConnWindow: c.InitialConnWindowSize,
		HeaderList: c.MaxHeaderListSize,
	}
}

// TestConfigNativeDefaults: zero values take the documented defaults.
func TestConfigNativeDefaults(t *testing.T) {
	t.Parallel()
	got := nativeOf(node.Config{}.Defaults())
	want := nativeSettings{Streams: 1000, HeaderList: 1 << 20}
	if got != want {
		t.Errorf("defaults %+v, want %+v", got, want)
	}
}

// TestConfigNativeValidate: each setting's range, checked after the
// defaults are filled in as New does; an error names the setting.
func TestConfigNativeValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		mutate  func(*node.Config)
		wantErr string // the setting named; "": valid
	}{
		{"defaults", func(*node.Config) {}, ""},
		{"durations", func(c *node.Config) {
			c.MaxConnectionIdle, c.MaxConnectionAge, c.MaxConnectionAgeGrace = time.Minute, time.Hour, 30*time.Second
		}, ""},
		{"negative idle", func(c *node.Config) { c.MaxConnectionIdle = -time.Second }, "max-connection-idle: "},
		{"negative age", func(c *node.Config) { c.MaxConnectionAge = -time.Second }, "max-connection-age: "},
		{"negative grace", func(c *node.Config) { c.MaxConnectionAgeGrace = -time.Second }, "max-connection-age-grace: "},
		{"one stream", func(c *node.Config) { c.MaxConcurrentStreams = 1 }, ""},
		{"negative streams", func(c *node.Config) { c.MaxConcurrentStreams = -1 }, "max-concurrent-streams: "},
		{"streams over uint32", func(c *node.Config) { c.MaxConcurrentStreams = 1 << 32 }, "max-concurrent-streams: "},
		{"least windows", func(c *node.Config) { c.InitialWindowSize, c.InitialConnWindowSize = 65535, 65535 }, ""},
		{"largest windows", func(c *node.Config) { c.InitialWindowSize, c.InitialConnWindowSize = 1<<31-1, 1<<31-1 }, ""},
		{"window too small", func(c *node.Config) { c.InitialWindowSize = 65534 }, "initial-window-size: "},
		{"window too large", func(c *node.Config) { c.InitialWindowSize = 1 << 31 }, "initial-window-size: "},
		{"negative window", func(c *node.Config) { c.InitialWindowSize = -1 }, "initial-window-size: "},
		{"conn window too small", func(c *node.Config) { c.InitialConnWindowSize = 1024 }, "initial-conn-window-size: "},
		{"conn window too large", func(c *node.Config) { c.InitialConnWindowSize = 1 << 31 }, "initial-conn-window-size: "},
		{"least header list", func(c *node.Config) { c.MaxHeaderListSize = 4096 }, ""},
		{"header list too small", func(c *node.Config) { c.MaxHeaderListSize = 4095 }, "max-header-list-size: "},
		{"negative header list", func(c *node.Config) { c.MaxHeaderListSize = -1 }, "max-header-list-size: "},
		{"header list over uint32", func(c *node.Config) { c.MaxHeaderListSize = 1 << 32 }, "max-header-list-size: "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := node.Config{Dev: true}
			tc.mutate(&c)
			err := c.Defaults().Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr)):
				t.Fatalf("Validate: %v, want an error starting %q", err, tc.wantErr)
			}
		})
	}
}

// TestConfigNativeFlags: each setting is a flag and a NOTIFY_* variable,
// the flag winning.
func TestConfigNativeFlags(t *testing.T) {
	t.Setenv("NOTIFY_MAX_CONNECTION_AGE", "90s")
	t.Setenv("NOTIFY_INITIAL_WINDOW_SIZE", "1048576")
	t.Setenv("NOTIFY_MAX_CONCURRENT_STREAMS", "64")
	var c node.Config
	fs := flag.NewFlagSet("notifyd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := c.BindFlags(fs); err != nil {
		t.Fatalf("BindFlags: %v", err)
	}
	err := fs.Parse([]string{
		"--max-connection-idle=5m", "--max-connection-age-grace=30s", "--max-concurrent-streams=32",
		"--initial-conn-window-size=8388608", "--max-header-list-size=65536",
	})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := nativeSettings{
		Idle: 5 * time.Minute, Age: 90 * time.Second, Grace: 30 * time.Second,
		Streams: 32, Window: 1 << 20, ConnWindow: 8 << 20, HeaderList: 64 << 10,
	}
	if got := nativeOf(c); got != want {
		t.Errorf("settings %+v, want %+v", got, want)
	}

	t.Setenv("NOTIFY_MAX_CONNECTION_IDLE", "soon")
	if err := new(node.Config).BindFlags(flag.NewFlagSet("notifyd", flag.ContinueOnError)); err == nil || !strings.Contains(err.Error(), "NOTIFY_MAX_CONNECTION_IDLE") {
		t.Errorf("BindFlags with NOTIFY_MAX_CONNECTION_IDLE=soon: %v, want an error naming it", err)
	}
}

// TestConfigNativePrint: `notifyd config print` shows every setting with
// its default.
func TestConfigNativePrint(t *testing.T) {
	var c node.Config
	fs := flag.NewFlagSet("notifyd", flag.ContinueOnError)
	if err := c.BindFlags(fs); err != nil {
		t.Fatalf("BindFlags: %v (is a NOTIFY_* variable set in the environment?)", err)
	}
	var out bytes.Buffer
	node.PrintConfig(&out, fs)
	lines := map[string]bool{}
	for _, l := range strings.Split(out.String(), "\n") {
		lines[l] = true
	}
	for _, line := range []string{
		"max-connection-idle = 0s",
		"max-connection-age = 0s",
		"max-connection-age-grace = 0s",
		"max-concurrent-streams = 1000",
		"initial-window-size = 0",
		"initial-conn-window-size = 0",
		"max-header-list-size = 1048576",
	} {
		if !lines[line] {
			t.Errorf("config print has no line %q:\n%s", line, out.String())
		}
	}
}

// TestConfigAppGRPCWebURL: the web app's grpc-web base URL is empty or an
// http(s) URL with nothing after its host and port.
func TestConfigAppGRPCWebURL(t *testing.T) {
	t.Parallel()
	for url, valid := range map[string]bool{
		"":                                  true,
		"https://notify.example.com:9090":   true,
		"https://notify.example.com:9090/":  true,
		"http://127.0.0.1:9090":             true,
		"notify.example.com:9090":           false,
		"wss://notify.example.com":          false,
		"https://":                          false,
		"https://notify.example.com/grpc":   false,
		"https://notify.example.com/?x=1":   false,
		"https://user@notify.example.com":   false,
		"https://notify.example.com#top":    false,
		"https://notify.example.com:port%1": false,
	} {
		err := node.Config{Dev: true, AppGRPCWebURL: url}.Defaults().Validate()
		switch {
		case valid && err != nil:
			t.Errorf("%q: %v, want valid", url, err)
		case !valid && (err == nil || !strings.HasPrefix(err.Error(), "app-grpc-web-url: ")):
			t.Errorf("%q: %v, want an app-grpc-web-url error", url, err)
		}
	}
}
