package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// memStats are the server runtime's own memory figures after a forced
// collection, read over its debug address: unlike RSS, they do not depend
// on where the collector's cycle stood when they were taken.
type memStats struct {
	HeapAlloc  int64 // live heap after the collection
	Stack      int64 // goroutine stacks in use
	Goroutines int64
}

// readMemStats forces two collections in the server at debugAddr (notifyd
// --debug-addr) and reads its heap and stack figures and goroutine count.
func readMemStats(debugAddr string) (memStats, error) {
	var m memStats
	client := &http.Client{Timeout: time.Minute}
	get := func(path string, line func(string)) error {
		resp, err := client.Get("http://" + debugAddr + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", path, resp.Status)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line(sc.Text())
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return sc.Err()
	}
	// gc=1 collects before the profile; the figures below are then taken
	// from a profile of the collected heap. Twice: what the first
	// collection left in sync.Pools' victim caches goes at the second.
	for range 2 {
		if err := get("/debug/pprof/heap?gc=1", func(string) {}); err != nil {
			return m, err
		}
	}
	err := get("/debug/pprof/heap?debug=1", func(l string) {
		switch {
		case strings.HasPrefix(l, "# HeapAlloc = "):
			m.HeapAlloc, _ = strconv.ParseInt(strings.TrimPrefix(l, "# HeapAlloc = "), 10, 64)
		case strings.HasPrefix(l, "# Stack = "):
			// "# Stack = inuse / sys"
			f := strings.Fields(strings.TrimPrefix(l, "# Stack = "))
			if len(f) > 0 {
				m.Stack, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
	})
	if err != nil {
		return m, err
	}
	err = get("/debug/pprof/goroutine?debug=1", func(l string) {
		if n, ok := strings.CutPrefix(l, "goroutine profile: total "); ok {
			m.Goroutines, _ = strconv.ParseInt(n, 10, 64)
		}
	})
	return m, err
}
