// Package grpchdr reads and writes the values of gRPC's own header fields
// (the gRPC over HTTP/2 protocol document): grpc-timeout, binary ("-bin")
// metadata and grpc-message. Both of a node's doors that carry gRPC calls
// themselves use it: the native port's transport (internal/wire) and
// grpc-web's in-process streams (internal/gateway).
package grpchdr

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParseTimeout reads a grpc-timeout value: at most 8 digits and a unit.
// A value past what a time.Duration holds is its largest.
func ParseTimeout(s string) (time.Duration, error) {
	if len(s) < 2 || len(s) > 9 {
		return 0, fmt.Errorf("bad length %d", len(s))
	}
	n, err := strconv.ParseInt(s[:len(s)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("bad number")
	}
	var unit time.Duration
	switch s[len(s)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, fmt.Errorf("bad unit %q", s[len(s)-1])
	}
	if n > math.MaxInt64/int64(unit) {
		return math.MaxInt64, nil
	}
	return time.Duration(n) * unit, nil
}

// DecodeBin decodes a binary metadata value, base64 with or without
// padding.
func DecodeBin(v string) ([]byte, error) {
	if len(v)%4 == 0 {
		return base64.StdEncoding.DecodeString(v)
	}
	return base64.RawStdEncoding.DecodeString(v)
}

// EncodeBin encodes a binary metadata value, base64 without padding.
func EncodeBin(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }

// EncodeMessage percent-encodes a grpc-message value: bytes outside
// printable ASCII and '%' itself.
func EncodeMessage(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c > '~' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// WebRequestHeaders are the request headers a browser may send on a
// grpc-web call: what a grpc-web CORS preflight grants, on either port.
var WebRequestHeaders = []string{"authorization", "x-grpc-web", "content-type", "x-user-agent", "grpc-timeout", "u-a"}
