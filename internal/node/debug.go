package node

import (
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"
)

// debugHost is where a debug address given as a bare port binds: profiles
// show memory contents, so they stay on the machine unless a host is named.
const debugHost = "127.0.0.1"

// debugListenAddr is addr with the loopback host filled in when it names
// only a port (":6060" or "6060").
func debugListenAddr(addr string) string {
	if !strings.Contains(addr, ":") {
		addr = ":" + addr
	}
	if strings.HasPrefix(addr, ":") {
		addr = debugHost + addr
	}
	return addr
}

// newDebugServer serves net/http/pprof under /debug/pprof/.
func newDebugServer() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
}

// DebugAddr is the bound debug address; "" when there is none.
func (n *Node) DebugAddr() string {
	if n.debugLn == nil {
		return ""
	}
	return n.debugLn.Addr().String()
}

// listenDebug binds the debug address, when one is configured.
func (n *Node) listenDebug() error {
	if n.cfg.DebugAddr == "" {
		return nil
	}
	l, err := net.Listen("tcp", debugListenAddr(n.cfg.DebugAddr))
	if err != nil {
		return err
	}
	n.debugLn, n.debug = l, newDebugServer()
	return nil
}
