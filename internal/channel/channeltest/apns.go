package channeltest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The APNs peer's identities.
const (
	APNsKeyID  = "ABC123DEFG"
	APNsTeamID = "DEF123GHIJ"
	APNsTopic  = "com.maxloyalty.app"
)

// APNsServer speaks Apple's provider API (POST /3/device/{token} over HTTP/2 and TLS) on
// 127.0.0.1 and accepts only requests whose provider token is an ES256 JWT signed with
// the .p8 key it generated, with its key id and team id, issued within the hour.
type APNsServer struct {
	srv      *httptest.Server
	key      *ecdsa.PrivateKey
	mu       sync.Mutex
	received []APNsRequest
	answers  map[string]APNsAnswer
}

// APNsRequest is one notification request the server received.
type APNsRequest struct {
	DeviceToken string
	// Header holds the apns-* headers.
	Header http.Header
	// Payload is the decoded JSON body.
	Payload map[string]any
	// Status is what the server answered.
	Status int
}

// APNsAnswer is an error answer for one device token.
type APNsAnswer struct {
	Status int
	// Reason is the documented reason string ("Unregistered", "BadDeviceToken").
	Reason string
}

// NewAPNsServer starts an APNs peer stopped by t's cleanup.
func NewAPNsServer(t testing.TB) *APNsServer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a := &APNsServer{key: key, answers: map[string]APNsAnswer{}}
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(a.serve))
	a.srv.EnableHTTP2 = true
	a.srv.StartTLS()
	t.Cleanup(a.srv.Close)
	return a
}

// CertPool trusts the server's certificate.
func (a *APNsServer) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(a.srv.Certificate())
	return pool
}

// URL is the server's origin.
func (a *APNsServer) URL() string { return a.srv.URL }

// AuthKey is the .p8 file's contents (PKCS #8 PEM) of the server's signing key.
func (a *APNsServer) AuthKey() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(a.key)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// Answer makes the server answer every notification to token with status and reason.
func (a *APNsServer) Answer(token string, ans APNsAnswer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.answers[token] = ans
}

// Received returns the requests received so far.
func (a *APNsServer) Received() []APNsRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]APNsRequest(nil), a.received...)
}

func (a *APNsServer) fail(w http.ResponseWriter, status int, reason string) {
	w.Header().Set("apns-id", newUUID())
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body := map[string]any{"reason": reason}
	if status == http.StatusGone {
		body["timestamp"] = time.Now().UnixMilli()
	}
	json.NewEncoder(w).Encode(body)
}

func (a *APNsServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 {
		http.Error(w, "HTTP/2 required", http.StatusHTTPVersionNotSupported)
		return
	}
	token, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	switch {
	case r.Method != http.MethodPost:
		a.fail(w, http.StatusMethodNotAllowed, "MethodNotAllowed")
		return
	case !ok || token == "":
		a.fail(w, http.StatusBadRequest, "MissingDeviceToken")
		return
	}
	if reason := a.checkProviderToken(r.Header.Get("Authorization")); reason != "" {
		a.fail(w, http.StatusForbidden, reason)
		return
	}
	h := r.Header
	if h.Get("apns-topic") != APNsTopic {
		a.fail(w, http.StatusBadRequest, "BadTopic")
		return
	}
	switch h.Get("apns-push-type") {
	case "alert", "background", "voip", "complication", "fileprovider", "mdm", "liveactivity", "pushtotalk", "location":
	default:
		a.fail(w, http.StatusBadRequest, "InvalidPushType")
		return
	}
	if p := h.Get("apns-priority"); p != "" && p != "5" && p != "10" && p != "1" {
		a.fail(w, http.StatusBadRequest, "BadPriority")
		return
	}
	if e := h.Get("apns-expiration"); e != "" {
		if _, err := strconv.ParseInt(e, 10, 64); err != nil {
			a.fail(w, http.StatusBadRequest, "BadExpirationDate")
			return
		}
	}
	if len(h.Get("apns-collapse-id")) > 64 {
		a.fail(w, http.StatusBadRequest, "BadCollapseId")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4097))
	if err != nil || len(body) == 0 {
		a.fail(w, http.StatusBadRequest, "PayloadEmpty")
		return
	}
	if len(body) > 4096 {
		a.fail(w, http.StatusRequestEntityTooLarge, "PayloadTooLarge")
		return
	}
	var payload map[string]any
	if json.Unmarshal(body, &payload) != nil {
		a.fail(w, http.StatusBadRequest, "BadPayload")
		return
	}
	if _, ok := payload["aps"].(map[string]any); !ok {
		a.fail(w, http.StatusBadRequest, "PayloadEmpty")
		return
	}
	if len(token) != 64 || strings.Trim(token, "0123456789abcdefABCDEF") != "" {
		a.record(token, h, payload, http.StatusBadRequest)
		a.fail(w, http.StatusBadRequest, "BadDeviceToken")
		return
	}
	a.mu.Lock()
	ans, scripted := a.answers[token]
	a.mu.Unlock()
	if scripted {
		a.record(token, h, payload, ans.Status)
		a.fail(w, ans.Status, ans.Reason)
		return
	}
	a.record(token, h, payload, http.StatusOK)
	id := h.Get("apns-id")
	if id == "" {
		id = newUUID()
	}
	w.Header().Set("apns-id", id)
	w.WriteHeader(http.StatusOK)
}

func (a *APNsServer) record(token string, h http.Header, payload map[string]any, status int) {
	keep := http.Header{}
	for k, v := range h {
		if strings.HasPrefix(strings.ToLower(k), "apns-") {
			keep[k] = v
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.received = append(a.received, APNsRequest{DeviceToken: token, Header: keep, Payload: payload, Status: status})
}

// checkProviderToken returns "" for a valid provider token, else APNs' reason.
func (a *APNsServer) checkProviderToken(authz string) string {
	tok, ok := strings.CutPrefix(strings.ToLower(authz[:min(len(authz), 7)])+authz[min(len(authz), 7):], "bearer ")
	if !ok || tok == "" {
		return "MissingProviderToken"
	}
	h, c, err := verifyJWT(tok, &a.key.PublicKey)
	if err != nil || h.Kid != APNsKeyID || c.Iss != APNsTeamID {
		return "InvalidProviderToken"
	}
	iat := time.Unix(c.Iat, 0)
	if time.Since(iat) > time.Hour {
		return "ExpiredProviderToken"
	}
	if time.Until(iat) > time.Minute {
		return "InvalidProviderToken"
	}
	return ""
}

func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	s := hex.EncodeToString(b)
	return fmt.Sprintf("%s-%s-%s-%s-%s", s[:8], s[8:12], s[12:16], s[16:20], s[20:])
}
