package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
)

// soakSample is one reading of the server process.
type soakSample struct {
	At         float64 `json:"t_s"` // seconds since the run began
	RSS        int64   `json:"rss_bytes"`
	FDs        int     `json:"open_files"`
	Goroutines int     `json:"goroutines"` // -1: /metrics had no go_goroutines
	Threads    int     `json:"threads"`
}

// sampler reads a process's RSS, open files and threads from /proc and its
// goroutines from go_goroutines at its /metrics.
type sampler struct {
	pid     int
	metrics string // http://host:port/metrics
	client  *http.Client
}

func (s *sampler) sample(at float64) (soakSample, error) {
	sm := soakSample{At: math.Round(at*10) / 10, Goroutines: -1}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return sm, err
	}
	if sm.RSS, err = parseVmRSS(st); err != nil {
		return sm, err
	}
	sm.Threads = parseThreads(st)
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.pid))
	if err != nil {
		return sm, err
	}
	sm.FDs = len(fds)
	if n, err := s.goroutines(); err == nil {
		sm.Goroutines = n
	}
	return sm, nil
}

func (s *sampler) goroutines() (int, error) {
	resp, err := s.client.Get(s.metrics)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, err
	}
	n, ok := parseGoGoroutines(body)
	if !ok {
		return 0, errors.New("/metrics has no go_goroutines")
	}
	return n, nil
}

// parseGoGoroutines finds "go_goroutines <n>" in the Prometheus text format.
func parseGoGoroutines(text []byte) (int, bool) {
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "go_goroutines")
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(rest)
		if strings.HasPrefix(rest, "{") {
			_, after, _ := strings.Cut(rest, "}")
			f = strings.Fields(after)
		}
		if len(f) < 1 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		return int(v), true
	}
	return 0, false
}

// parseThreads finds "Threads: <n>" in /proc/<pid>/status (0 if absent).
func parseThreads(status []byte) int {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(rest))
			return n
		}
	}
	return 0
}

// growthLimits are the tolerated increases from the samples just after the
// warm-up to the last samples of the run.
type growthLimits struct {
	RSSPct         float64 // RSS: this many percent of the base...
	RSSMB          float64 // ... or this many MiB, whichever is larger
	GoroutinePct   float64 // goroutines: this many percent of the base...
	GoroutineSlack int     // ... plus this many
	FDSlack        int     // open files: this many
}

func (l growthLimits) String() string {
	return fmt.Sprintf("RSS +%g%% or +%g MiB (the larger), goroutines +%g%% +%d, open files +%d",
		l.RSSPct, l.RSSMB, l.GoroutinePct, l.GoroutineSlack, l.FDSlack)
}

// metricGrowth is one sampled figure's verdict.
type metricGrowth struct {
	Name      string  `json:"name"`
	Start     float64 `json:"start"`
	Base      float64 `json:"after_warmup"`
	End       float64 `json:"end"`
	Max       float64 `json:"max_after_warmup"`
	AfterStop float64 `json:"after_stop"`
	Growth    float64 `json:"growth"`
	Allowed   float64 `json:"allowed_growth"`
	OK        bool    `json:"ok"`
}

// judgeWindow returns how many samples the base and end values are the
// median of, out of n after the warm-up: a third of them, so that a few
// noisy readings (the Go heap breathes with each GC cycle) neither hide nor
// fake a trend, while a steady leak still shows as two thirds of its growth.
func judgeWindow(n int) int { return max(1, n/3) }

// judgeGrowth compares the samples taken between warmup and end (seconds
// since the start): the median of the first third against the median of
// the last third. The first sample is the start; afterStop, when set, is
// reported only. threads judges the thread count instead of goroutines
// (no go_goroutines).
func judgeGrowth(samples []soakSample, afterStop *soakSample, warmup, end float64, lim growthLimits, threads bool) ([]metricGrowth, []string) {
	var window []soakSample
	for _, s := range samples {
		if s.At >= warmup && s.At <= end {
			window = append(window, s)
		}
	}
	if len(samples) == 0 || len(window) < 2 {
		return nil, []string{fmt.Sprintf("too few samples after the warm-up (%d): lengthen --duration or shorten --sample-every", len(window))}
	}
	k := judgeWindow(len(window))
	type metric struct {
		name    string
		get     func(soakSample) float64
		allowed func(base float64) float64
	}
	gName, gGet := "goroutines", func(s soakSample) float64 { return float64(s.Goroutines) }
	if threads {
		gName, gGet = "threads", func(s soakSample) float64 { return float64(s.Threads) }
	}
	metrics := []metric{
		{"rss_bytes", func(s soakSample) float64 { return float64(s.RSS) },
			func(b float64) float64 { return max(b*lim.RSSPct/100, lim.RSSMB*(1<<20)) }},
		{gName, gGet, func(b float64) float64 { return math.Floor(b*lim.GoroutinePct/100) + float64(lim.GoroutineSlack) }},
		{"open_files", func(s soakSample) float64 { return float64(s.FDs) }, func(float64) float64 { return float64(lim.FDSlack) }},
	}
	var out []metricGrowth
	var fails []string
	for _, m := range metrics {
		vals := make([]float64, len(window))
		for i, s := range window {
			vals[i] = m.get(s)
		}
		g := metricGrowth{Name: m.name, Start: m.get(samples[0]), Base: median(vals[:k]), End: median(vals[len(vals)-k:]), Max: slices.Max(vals), AfterStop: -1}
		if afterStop != nil {
			g.AfterStop = m.get(*afterStop)
		}
		g.Growth = g.End - g.Base
		g.Allowed = m.allowed(g.Base)
		g.OK = g.Growth <= g.Allowed
		if !g.OK {
			fails = append(fails, fmt.Sprintf("%s grew from %s to %s after the warm-up (allowed +%s)", m.name, fmtMetric(m.name, g.Base), fmtMetric(m.name, g.End), fmtMetric(m.name, g.Allowed)))
		}
		out = append(out, g)
	}
	return out, fails
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func fmtMetric(name string, v float64) string {
	if v < 0 {
		return "-"
	}
	if name == "rss_bytes" {
		return strconv.FormatFloat(v/(1<<20), 'f', 1, 64) + " MB"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}
