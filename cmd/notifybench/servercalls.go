package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// callCounts are a method's completed calls by gRPC code name, as the
// server counts them in notify_grpc_requests_total{method, code}.
type callCounts map[string]float64

// sub returns the calls counted in c and not in before, by code.
func (c callCounts) sub(before callCounts) callCounts {
	d := callCounts{}
	for code, n := range c {
		if v := n - before[code]; v != 0 {
			d[code] = v
		}
	}
	return d
}

// ok and failed split the calls into those that ended with OK and the rest.
func (c callCounts) ok() int64 { return int64(c["OK"]) }

func (c callCounts) failed() int64 {
	var n float64
	for code, v := range c {
		if code != "OK" {
			n += v
		}
	}
	return int64(n)
}

// String lists the codes other than OK, for a report's note.
func (c callCounts) String() string {
	var parts []string
	for code, v := range c {
		if code != "OK" && v != 0 {
			parts = append(parts, code+" "+strconv.FormatInt(int64(v), 10))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// fetchCallCounts reads method's counts from the server's /metrics on its
// HTTP address.
func fetchCallCounts(ctx context.Context, httpAddr, method string) (callCounts, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	c, found := parseCallCounts(body, method)
	if !found {
		return nil, fmt.Errorf("/metrics has no notify_grpc_requests_total for %s", method)
	}
	return c, nil
}

// parseCallCounts finds the notify_grpc_requests_total samples of method in
// the Prometheus text format.
func parseCallCounts(text []byte, method string) (callCounts, bool) {
	const name = "notify_grpc_requests_total{"
	c := callCounts{}
	found := false
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name)
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "}")
		if !ok {
			continue
		}
		l := parseLabels(labels)
		if l["method"] != method {
			continue
		}
		f := strings.Fields(value)
		if len(f) < 1 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		c[l["code"]] += v
		found = true
	}
	return c, found
}

// parseLabels reads name="value" pairs separated by commas; values are
// unquoted as the text format escapes them (\\, \" and \n).
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for len(s) > 0 {
		name, rest, ok := strings.Cut(s, `="`)
		if !ok {
			return out
		}
		var v strings.Builder
		i := 0
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				i++
				if rest[i] == 'n' {
					v.WriteByte('\n')
					continue
				}
			}
			v.WriteByte(rest[i])
		}
		out[strings.TrimSpace(name)] = v.String()
		if i >= len(rest) {
			return out
		}
		s = strings.TrimPrefix(rest[i+1:], ",")
	}
	return out
}
