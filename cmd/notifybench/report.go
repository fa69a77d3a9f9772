package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is one row of the report.
type Result struct {
	Mode        string `json:"mode"`
	Transport   string `json:"transport"`
	Subscribers int    `json:"subscribers"`
	Connections int    `json:"connections"`
	Rooms       int    `json:"rooms"`
	Concurrency int    `json:"concurrency,omitempty"`
	Batch       int    `json:"batch,omitempty"`
	// TargetRate is events published per second asked for (0: as fast as
	// possible); AchievedRate is what the publishers managed.
	TargetRate   float64 `json:"target_rate"`
	AchievedRate float64 `json:"achieved_rate"`
	PayloadBytes int     `json:"payload_bytes"`
	Seconds      float64 `json:"seconds"`

	Published     int64  `json:"published"`
	PublishErrors int64  `json:"publish_errors"`
	PublishError  string `json:"publish_error,omitempty"`
	// Delivered counts events received in order by all subscribers;
	// DeliveriesPerSec divides it by the time from the first publish to
	// the last receipt.
	Delivered        int64   `json:"delivered"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	// Latency is publish call start to receipt (delivery modes) or the
	// publish call's duration (publish modes).
	Latency Latency `json:"latency"`

	Lost         int64  `json:"lost"`
	Duplicated   int64  `json:"duplicated"`
	Unknown      int64  `json:"unknown,omitempty"`
	EpochChanges int64  `json:"epoch_changes,omitempty"`
	Cut          int64  `json:"cut_subscribers"`
	CutMissed    int64  `json:"cut_missed_events,omitempty"`
	StreamErrors int    `json:"stream_errors"`
	StreamError  string `json:"stream_error,omitempty"`
	Behind       int    `json:"behind_at_end,omitempty"`

	ServerPID      int     `json:"server_pid,omitempty"`
	RSSBefore      int64   `json:"server_rss_before,omitempty"`
	RSSAfter       int64   `json:"server_rss_after,omitempty"`
	BytesPerStream float64 `json:"bytes_per_stream,omitempty"`
	// HeapPerStream and StackPerStream (idle, with the server's debug
	// address) are the growth of its live heap after a forced collection
	// and of its goroutine stacks, per stream; GoroutinesPerStream the
	// growth of its goroutine count.
	HeapPerStream       float64 `json:"heap_bytes_per_stream,omitempty"`
	StackPerStream      float64 `json:"stack_bytes_per_stream,omitempty"`
	GoroutinesPerStream float64 `json:"goroutines_per_stream,omitempty"`
	ServerCPU           float64 `json:"server_cpu_seconds,omitempty"`
	ServerCores         float64 `json:"server_cores,omitempty"`
	ClientCores         float64 `json:"client_cores,omitempty"`
	// ServerMicrosPerEvent is the server's CPU time per delivered event
	// (delivery modes) or per published event (publish modes): unlike the
	// rates, it hardly depends on what else the machine runs.
	ServerMicrosPerEvent float64 `json:"server_us_per_event,omitempty"`
	ClientMicrosPerEvent float64 `json:"client_us_per_event,omitempty"`
	// OtherCores is the CPU every other process used meanwhile: on a
	// shared machine, a large figure means the run competed for CPU.
	OtherCores float64 `json:"other_cores"`

	Notes []string `json:"notes,omitempty"`

	clientCPU float64
}

// perEvent fills the CPU-per-event figures for n events.
func (r *Result) perEvent(n int64) {
	if n <= 0 {
		return
	}
	if r.ServerCPU > 0 {
		r.ServerMicrosPerEvent = round3(r.ServerCPU * 1e6 / float64(n))
	}
	if r.clientCPU > 0 {
		r.ClientMicrosPerEvent = round3(r.clientCPU * 1e6 / float64(n))
	}
}

// Clean reports whether nothing was lost, duplicated or broken.
func (r *Result) Clean() bool {
	return r.Lost == 0 && r.Duplicated == 0 && r.StreamErrors == 0 && r.PublishErrors == 0 && r.EpochChanges == 0
}

// serverMeter samples the server process's RSS and CPU and this process's
// CPU over a measured interval.
type serverMeter struct {
	pid        int
	serverFrom procStat
	selfFrom   procStat
	busyFrom   time.Duration
	// children is the CPU time of load generators this process ran and
	// waited for during the interval (h2load, wrk), counted as client CPU.
	children time.Duration
	// profile, when set, starts a CPU profile of the server at the start of
	// the measured phase and returns what waits for it to be written.
	profile     func() (wait func() error)
	profileWait func() error
}

func (m *serverMeter) begin() {
	if m == nil {
		return
	}
	m.selfFrom, _ = readProc(os.Getpid())
	m.busyFrom, _ = systemBusy()
	m.children = 0
	if m.profile != nil {
		m.profileWait = m.profile()
	}
	if m.pid > 0 {
		m.serverFrom, _ = readProc(m.pid)
	}
}

func (m *serverMeter) rss() int64 {
	if m == nil || m.pid <= 0 {
		return 0
	}
	st, err := readProc(m.pid)
	if err != nil {
		return 0
	}
	return st.RSS
}

// addClient adds the CPU time of a load generator run since begin to the
// client's.
func (m *serverMeter) addClient(cpu time.Duration) {
	if m != nil {
		m.children += cpu
	}
}

// end fills r's CPU and RSS columns for the interval since begin.
func (m *serverMeter) end(r *Result) {
	if m == nil {
		return
	}
	if m.profileWait != nil {
		if err := m.profileWait(); err != nil {
			r.Notes = append(r.Notes, "server profile: "+err.Error())
		}
		m.profileWait = nil
	}
	self, err := readProc(os.Getpid())
	if err != nil || !m.selfFrom.At.Before(self.At) {
		return
	}
	wall := self.At.Sub(m.selfFrom.At).Seconds()
	used := self.CPU - m.selfFrom.CPU + m.children
	r.ClientCores = round3(used.Seconds() / wall)
	r.clientCPU = used.Seconds()
	if m.pid > 0 && m.pid != os.Getpid() {
		if st, err := readProc(m.pid); err == nil {
			r.ServerPID = m.pid
			srv := st.CPU - m.serverFrom.CPU
			used += srv
			r.ServerCPU = round3(srv.Seconds())
			r.ServerCores = round3(srv.Seconds() / wall)
			if r.RSSAfter == 0 {
				r.RSSAfter = st.RSS
			}
		}
	} else if m.pid == os.Getpid() {
		// An in-process node: one process, one figure (client columns).
		r.ServerPID = m.pid
		if r.RSSAfter == 0 {
			r.RSSAfter = self.RSS
		}
	}
	if busy, err := systemBusy(); err == nil && busy > m.busyFrom {
		r.OtherCores = round3(max(0, (busy-m.busyFrom-used).Seconds()/wall))
	}
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// printJSON writes the results as an indented JSON array.
func printJSON(w io.Writer, rs []*Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rs)
}

// printTable writes the results as one aligned table, then each row's notes.
// The server's CPU time per operation (an event delivered in fanout and
// personal, an event published in publish) comes first after the mode: of
// the figures, it depends least on the load generator and on what else
// the machine runs.
func printTable(w io.Writer, rs []*Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tsrv µs/op\ttransport\tsubs\tconns\trooms\trate tgt\trate got\tpayload\tdur s\tdeliv/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\tlost\tdup\tcut\terrs\trss MB\tB/stream\theap B/str\tstack B/str\tsrv cores\tcli cores\tother\tcli µs/op\t")
	for _, r := range rs {
		tgt := "max"
		if r.TargetRate > 0 {
			tgt = num(r.TargetRate)
		}
		if r.Mode == "idle" {
			tgt = "-"
		}
		errs := r.PublishErrors + int64(r.StreamErrors)
		srvCores := "-"
		if r.ServerPID != 0 && r.ServerPID != os.Getpid() {
			srvCores = strconv.FormatFloat(r.ServerCores, 'f', 2, 64)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%d\t%.1f\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t\n",
			r.Mode, micros(r.ServerMicrosPerEvent), r.Transport, r.Subscribers, r.Connections, r.Rooms, tgt, num(r.AchievedRate), r.PayloadBytes,
			r.Seconds, num(r.DeliveriesPerSec), r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max,
			r.Lost, r.Duplicated, r.Cut, errs, mb(r.RSSAfter), bytesPer(r.BytesPerStream), bytesPer(r.HeapPerStream), bytesPer(r.StackPerStream), srvCores, cores(r.ClientCores), r.OtherCores, micros(r.ClientMicrosPerEvent))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rs {
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  %s: %s\n", r.Mode, n)
		}
	}
	return nil
}

func num(f float64) string {
	if f == 0 {
		return "0"
	}
	return strconv.FormatFloat(math.Round(f), 'f', 0, 64)
}

func mb(b int64) string {
	if b == 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64)
}

func bytesPer(b float64) string {
	if b == 0 {
		return "-"
	}
	return strconv.FormatFloat(b, 'f', 0, 64)
}

func micros(us float64) string {
	if us == 0 {
		return "-"
	}
	return strconv.FormatFloat(us, 'f', 1, 64)
}

func cores(c float64) string {
	if c == 0 {
		return "-"
	}
	return strconv.FormatFloat(c, 'f', 2, 64)
}

// modeName joins a mode and its variant details, for the first column.
func modeName(parts ...string) string {
	var keep []string
	for _, p := range parts {
		if p != "" {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, " ")
}

func seconds(d time.Duration) float64 { return math.Round(d.Seconds()*10) / 10 }
