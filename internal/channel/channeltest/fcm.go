package channeltest

import (
	"crypto/rand"
	"crypto/rsa"
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

// FCMProject is the project id of the FCM peer's service account.
const FCMProject = "notify-test"

// FCMServer speaks FCM HTTP v1 (POST /v1/projects/{project}/messages:send) and the OAuth
// 2.0 JWT bearer token exchange (RFC 7523) of a Google service account, over TLS and
// HTTP/2 on 127.0.0.1. It issues access tokens only for assertions signed with the
// service account key it generated, and takes messages only with those tokens.
type FCMServer struct {
	srv      *httptest.Server
	key      *rsa.PrivateKey
	keyID    string
	email    string
	mu       sync.Mutex
	tokens   map[string]bool
	received []FCMRequest
	answers  map[string]FCMAnswer
	// exchanges counts token exchanges.
	exchanges int
}

// FCMRequest is one send request the server received.
type FCMRequest struct {
	// Message is the request's "message" object, as decoded JSON.
	Message map[string]any
	// Token is message.token.
	Token string
	// Status is what the server answered.
	Status int
}

// FCMAnswer is an error answer for one registration token, in FCM v1's documented
// format: a google.rpc.Status with an FcmError detail.
type FCMAnswer struct {
	// HTTP is the HTTP status (404 for UNREGISTERED, 400 for INVALID_ARGUMENT...).
	HTTP int
	// Status is the canonical status ("NOT_FOUND", "INVALID_ARGUMENT", "UNAVAILABLE").
	Status string
	// ErrorCode is FcmError.errorCode ("UNREGISTERED", "INVALID_ARGUMENT", "QUOTA_EXCEEDED").
	ErrorCode string
	// TokenViolation adds a google.rpc.BadRequest naming message.token, as FCM does for a
	// malformed registration token.
	TokenViolation bool
	// RetryAfter is sent as Retry-After when set.
	RetryAfter string
}

// NewFCMServer starts an FCM peer stopped by t's cleanup.
func NewFCMServer(t testing.TB) *FCMServer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	kid := make([]byte, 20)
	rand.Read(kid)
	f := &FCMServer{
		key: key, keyID: hex.EncodeToString(kid),
		email:   "notify@" + FCMProject + ".iam.gserviceaccount.com",
		tokens:  map[string]bool{},
		answers: map[string]FCMAnswer{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", f.token)
	mux.HandleFunc("POST /v1/projects/{project}/messages:send", f.send)
	f.srv = httptest.NewUnstartedServer(mux)
	f.srv.EnableHTTP2 = true
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

// CertPool trusts the server's certificate.
func (f *FCMServer) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(f.srv.Certificate())
	return pool
}

// Endpoint is the API root to configure the sender with.
func (f *FCMServer) Endpoint() string { return f.srv.URL + "/v1" }

// CredentialsJSON is a service account key file whose token_uri is this server.
func (f *FCMServer) CredentialsJSON() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(f.key)
	if err != nil {
		panic(err)
	}
	b, _ := json.Marshal(map[string]string{
		"type":                        "service_account",
		"project_id":                  FCMProject,
		"private_key_id":              f.keyID,
		"private_key":                 string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":                f.email,
		"client_id":                   "100000000000000000001",
		"auth_uri":                    f.srv.URL + "/auth",
		"token_uri":                   f.srv.URL + "/token",
		"auth_provider_x509_cert_url": f.srv.URL + "/certs",
		"client_x509_cert_url":        f.srv.URL + "/certs/" + f.email,
		"universe_domain":             "googleapis.com",
	})
	return b
}

// Answer makes the server answer every message to token with a.
func (f *FCMServer) Answer(token string, a FCMAnswer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[token] = a
}

// Received returns the send requests received so far.
func (f *FCMServer) Received() []FCMRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]FCMRequest(nil), f.received...)
}

// Exchanges is the number of access tokens issued.
func (f *FCMServer) Exchanges() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.exchanges
}

// token implements RFC 7523's JWT bearer grant as Google's token endpoint does.
func (f *FCMServer) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, "invalid_request", err.Error())
		return
	}
	if r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		oauthError(w, "unsupported_grant_type", r.PostForm.Get("grant_type"))
		return
	}
	h, c, err := verifyJWT(r.PostForm.Get("assertion"), &f.key.PublicKey)
	now := time.Now().Unix()
	switch {
	case err != nil:
		oauthError(w, "invalid_grant", err.Error())
		return
	case h.Kid != "" && h.Kid != f.keyID:
		oauthError(w, "invalid_grant", "unknown key id")
		return
	case c.Iss != f.email:
		oauthError(w, "invalid_grant", "iss is not the service account")
		return
	case c.Aud != f.srv.URL+"/token":
		oauthError(w, "invalid_grant", "aud is not the token endpoint")
		return
	case c.Exp <= now || c.Exp-c.Iat > 3600 || c.Iat > now+60:
		oauthError(w, "invalid_grant", "bad iat or exp")
		return
	case !strings.Contains(" "+c.Scope+" ", " https://www.googleapis.com/auth/firebase.messaging "):
		oauthError(w, "invalid_scope", c.Scope)
		return
	}
	b := make([]byte, 24)
	rand.Read(b)
	tok := "ya29." + hex.EncodeToString(b)
	f.mu.Lock()
	f.tokens[tok] = true
	f.exchanges++
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3599})
}

func oauthError(w http.ResponseWriter, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func (f *FCMServer) send(w http.ResponseWriter, r *http.Request) {
	bearer, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	authorized := f.tokens[bearer]
	f.mu.Unlock()
	if !authorized {
		fcmError(w, FCMAnswer{HTTP: 401, Status: "UNAUTHENTICATED"}, "Request had invalid authentication credentials.")
		return
	}
	if p := r.PathValue("project"); p != FCMProject {
		fcmError(w, FCMAnswer{HTTP: 403, Status: "PERMISSION_DENIED", ErrorCode: "SENDER_ID_MISMATCH"}, "project "+p)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	var req struct {
		Message map[string]any `json:"message"`
	}
	if err != nil || json.Unmarshal(body, &req) != nil || req.Message == nil {
		fcmError(w, FCMAnswer{HTTP: 400, Status: "INVALID_ARGUMENT", ErrorCode: "INVALID_ARGUMENT"}, "Invalid JSON payload received.")
		return
	}
	tok, _ := req.Message["token"].(string)
	if err := checkFCMMessage(req.Message); err != nil {
		fcmError(w, FCMAnswer{HTTP: 400, Status: "INVALID_ARGUMENT", ErrorCode: "INVALID_ARGUMENT"}, err.Error())
		return
	}
	f.mu.Lock()
	a, scripted := f.answers[tok]
	status := http.StatusOK
	if scripted {
		status = a.HTTP
	}
	f.received = append(f.received, FCMRequest{Message: req.Message, Token: tok, Status: status})
	n := len(f.received)
	f.mu.Unlock()
	if scripted {
		fcmError(w, a, "scripted answer")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"name": "projects/" + FCMProject + "/messages/0:" + strconv.Itoa(n)})
}

// checkFCMMessage checks the fields the reference documents for a token message.
func checkFCMMessage(m map[string]any) error {
	if tok, _ := m["token"].(string); tok == "" {
		return fmt.Errorf("message.token is required")
	}
	if n, ok := m["notification"].(map[string]any); ok {
		if _, ok := n["title"].(string); !ok {
			return fmt.Errorf("notification.title must be a string")
		}
	}
	if d, ok := m["data"].(map[string]any); ok {
		for k, v := range d {
			if _, ok := v.(string); !ok {
				return fmt.Errorf("data.%s must be a string", k)
			}
		}
	}
	if a, ok := m["android"].(map[string]any); ok {
		if p, ok := a["priority"].(string); ok && p != "normal" && p != "high" && p != "NORMAL" && p != "HIGH" {
			return fmt.Errorf("android.priority %q", p)
		}
		if ttl, ok := a["ttl"].(string); ok {
			if _, err := time.ParseDuration(ttl); err != nil || !strings.HasSuffix(ttl, "s") {
				return fmt.Errorf("android.ttl %q is not a duration in seconds", ttl)
			}
		}
	}
	return nil
}

func fcmError(w http.ResponseWriter, a FCMAnswer, message string) {
	details := []map[string]any{}
	if a.ErrorCode != "" {
		details = append(details, map[string]any{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": a.ErrorCode})
	}
	if a.TokenViolation {
		details = append(details, map[string]any{
			"@type":           "type.googleapis.com/google.rpc.BadRequest",
			"fieldViolations": []map[string]string{{"field": "message.token", "description": "Invalid registration token"}},
		})
	}
	if a.RetryAfter != "" {
		w.Header().Set("Retry-After", a.RetryAfter)
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(a.HTTP)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code": a.HTTP, "message": message, "status": a.Status, "details": details,
	}})
}
