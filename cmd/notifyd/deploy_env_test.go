package main

import (
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/maxloyalty/notify/internal/node"
)

// TestDeployEnvNames: every NOTIFY_* variable the image, the compose file
// and docs/DEPLOY.md set is one notifyd reads; a misspelt one would be
// ignored without a word.
func TestDeployEnvNames(t *testing.T) {
	known := map[string]bool{
		"NOTIFY_CONFIG": true, // the config file, read by main
		"NOTIFY_IMAGE":  true, // compose.yaml's choice of image, not notifyd's
	}
	var cfg node.Config
	fs := flag.NewFlagSet("notifyd", flag.ContinueOnError)
	_ = cfg.BindFlags(fs)
	fs.VisitAll(func(f *flag.Flag) {
		known["NOTIFY_"+strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))] = true
	})
	name := regexp.MustCompile(`NOTIFY_[A-Z0-9_]+`)
	for _, path := range []string{"../../Dockerfile", "../../deploy/compose.yaml", "../../docs/DEPLOY.md"} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		found := 0
		for _, v := range name.FindAllString(string(b), -1) {
			found++
			if !known[v] {
				t.Errorf("%s: %s is not a variable notifyd reads", path, v)
			}
		}
		if found == 0 {
			t.Errorf("%s names no NOTIFY_* variable", path)
		}
	}
}
