package channeltest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// PushService is a web push service (RFC 8030) on 127.0.0.1 over TLS and HTTP/2. It
// accepts push messages for the subscriptions it created, verifies their VAPID
// authorization (RFC 8292) against the application server key the subscription was made
// with, and decrypts their aes128gcm payload (RFC 8291) with the subscription's private
// key, as a browser would.
type PushService struct {
	srv *httptest.Server
	// Now is the service's clock for the JWT's exp; nil is time.Now.
	Now func() time.Time

	mu       sync.Mutex
	subs     map[string]*PushSubscription
	received []PushMessage
	next     int
}

// PushSubscription is what a browser keeps for one subscription: the public parts go to
// the application server, the private key and auth secret stay here.
type PushSubscription struct {
	ID string
	// Endpoint, P256dh and Auth are what the browser hands the application server.
	Endpoint string
	P256dh   string
	Auth     string

	appServerKey []byte
	key          *ecdh.PrivateKey
	auth         []byte
	gone         bool
	answer       *answer
}

type answer struct {
	status     int
	retryAfter string
}

// PushMessage is one push message the service accepted or refused after decryption.
type PushMessage struct {
	SubscriptionID string
	// TTL, Urgency and Topic are the request's headers.
	TTL     int
	Urgency string
	Topic   string
	// Subject and Audience are the VAPID JWT's sub and aud.
	Subject  string
	Audience string
	// Expires is the VAPID JWT's exp.
	Expires time.Time
	// Plaintext is the decrypted payload.
	Plaintext []byte
	// Status is what the service answered.
	Status int
}

// NewPushService starts a push service stopped by t's cleanup.
func NewPushService(t testing.TB) *PushService {
	t.Helper()
	p := &PushService{subs: map[string]*PushSubscription{}}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.EnableHTTP2 = true
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	return p
}

// CertPool trusts the service's certificate.
func (p *PushService) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.srv.Certificate())
	return pool
}

// URL is the service's origin, the VAPID JWT's expected audience.
func (p *PushService) URL() string { return p.srv.URL }

// Subscribe creates a subscription bound to the application server's VAPID public key
// (base64url), generating its P-256 key pair and 16-byte auth secret as a browser does.
func (p *PushService) Subscribe(t testing.TB, applicationServerKey string) *PushSubscription {
	t.Helper()
	ask, err := base64.RawURLEncoding.DecodeString(applicationServerKey)
	if err != nil {
		t.Fatalf("application server key: %v", err)
	}
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	id := "sub" + strconv.Itoa(p.next)
	s := &PushSubscription{
		ID:           id,
		Endpoint:     p.srv.URL + "/push/" + id,
		P256dh:       base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()),
		Auth:         base64.RawURLEncoding.EncodeToString(auth),
		appServerKey: ask,
		key:          key,
		auth:         auth,
	}
	p.subs[id] = s
	return s
}

// Unsubscribe ends a subscription: later messages get 410 Gone.
func (p *PushService) Unsubscribe(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.subs[id].gone = true
}

// Answer makes the service answer status (with Retry-After when retryAfter is set) to
// every valid message for subscription id, instead of 201.
func (p *PushService) Answer(id string, status int, retryAfter string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.subs[id].answer = &answer{status: status, retryAfter: retryAfter}
}

// Received returns the messages received so far.
func (p *PushService) Received() []PushMessage {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]PushMessage(nil), p.received...)
}

// maxPushBody is the largest request body the service takes: RFC 8030 section 7.2
// requires at least 4096 bytes of payload, and webpush encrypts into one 4096-byte record.
const maxPushBody = 4096

func (p *PushService) serve(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, "/push/")
	if r.Method != http.MethodPost || !ok {
		http.Error(w, "not a push resource", http.StatusNotFound)
		return
	}
	if r.ProtoMajor != 2 {
		http.Error(w, "HTTP/2 expected", http.StatusHTTPVersionNotSupported)
		return
	}
	p.mu.Lock()
	sub := p.subs[id]
	p.mu.Unlock()
	if sub == nil {
		http.Error(w, "no such subscription", http.StatusNotFound)
		return
	}
	msg := PushMessage{SubscriptionID: id, Urgency: r.Header.Get("Urgency"), Topic: r.Header.Get("Topic")}
	// RFC 8030 section 5.2: TTL is required.
	ttl, err := strconv.Atoi(r.Header.Get("TTL"))
	if err != nil || ttl < 0 {
		http.Error(w, "TTL header missing or invalid", http.StatusBadRequest)
		return
	}
	msg.TTL = ttl
	switch msg.Urgency {
	case "", "very-low", "low", "normal", "high":
	default:
		http.Error(w, "invalid Urgency", http.StatusBadRequest)
		return
	}
	// RFC 8030 section 5.4: at most 32 characters of the URL-safe base64 alphabet.
	if len(msg.Topic) > 32 || strings.Trim(msg.Topic, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		http.Error(w, "invalid Topic", http.StatusBadRequest)
		return
	}
	if err := p.checkVAPID(r, sub, &msg); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if sub.gone {
		http.Error(w, "subscription expired", http.StatusGone)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPushBody+1))
	if err != nil {
		http.Error(w, "reading body", http.StatusBadRequest)
		return
	}
	if len(body) > maxPushBody {
		http.Error(w, "payload too large", http.StatusRequestEntityTooLarge)
		return
	}
	if r.Header.Get("Content-Encoding") != "aes128gcm" {
		http.Error(w, "Content-Encoding must be aes128gcm", http.StatusUnsupportedMediaType)
		return
	}
	msg.Plaintext, err = decryptAES128GCM(body, sub.key, sub.auth)
	if err != nil {
		http.Error(w, "decrypting: "+err.Error(), http.StatusBadRequest)
		return
	}
	msg.Status = http.StatusCreated
	if sub.answer != nil {
		msg.Status = sub.answer.status
		if sub.answer.retryAfter != "" {
			w.Header().Set("Retry-After", sub.answer.retryAfter)
		}
	}
	p.mu.Lock()
	p.received = append(p.received, msg)
	n := len(p.received)
	p.mu.Unlock()
	if msg.Status == http.StatusCreated {
		w.Header().Set("Location", p.srv.URL+"/message/"+strconv.Itoa(n))
		w.WriteHeader(http.StatusCreated)
		return
	}
	http.Error(w, http.StatusText(msg.Status), msg.Status)
}

// checkVAPID verifies RFC 8292's "vapid t=<JWT>, k=<key>" authorization.
func (p *PushService) checkVAPID(r *http.Request, sub *PushSubscription, msg *PushMessage) error {
	auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "vapid ")
	if !ok {
		return errors.New("authorization scheme is not vapid")
	}
	params := map[string]string{}
	for _, part := range strings.Split(auth, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		params[k] = v
	}
	k, err := base64.RawURLEncoding.DecodeString(params["k"])
	if err != nil || string(k) != string(sub.appServerKey) {
		return errors.New("k is not the subscription's application server key")
	}
	x, y := elliptic.Unmarshal(elliptic.P256(), k) //nolint:staticcheck // the point is checked below
	if x == nil {
		return errors.New("k is not a P-256 point")
	}
	pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).Set(x), Y: new(big.Int).Set(y)}
	h, c, err := verifyJWT(params["t"], pub)
	if err != nil {
		return err
	}
	if h.Typ != "" && h.Typ != "JWT" {
		return fmt.Errorf("typ %q", h.Typ)
	}
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
	exp := time.Unix(c.Exp, 0)
	switch {
	case c.Aud != p.srv.URL:
		return fmt.Errorf("aud %q is not the push resource's origin %q", c.Aud, p.srv.URL)
	case !exp.After(now):
		return errors.New("token expired")
	case exp.After(now.Add(24 * time.Hour)):
		// RFC 8292 section 2: exp MUST NOT be more than 24 hours from the request.
		return errors.New("exp more than 24 hours ahead")
	case !strings.HasPrefix(c.Sub, "mailto:") && !strings.HasPrefix(c.Sub, "https:"):
		return fmt.Errorf("sub %q is neither mailto: nor https:", c.Sub)
	}
	msg.Subject, msg.Audience, msg.Expires = c.Sub, c.Aud, exp
	return nil
}

// decryptAES128GCM removes RFC 8188's aes128gcm content coding with RFC 8291's key
// derivation: the user agent's private key and auth secret, and the application server's
// ephemeral public key from the header's keyid.
func decryptAES128GCM(body []byte, ua *ecdh.PrivateKey, authSecret []byte) ([]byte, error) {
	// Header: salt (16) | rs (4) | idlen (1) | keyid (idlen).
	if len(body) < 21 {
		return nil, errors.New("short header")
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	if rs < 18 {
		return nil, errors.New("record size below 18")
	}
	if idlen != 65 || len(body) < 21+idlen {
		return nil, errors.New("keyid is not a 65-byte P-256 public key")
	}
	asPub, err := ecdh.P256().NewPublicKey(body[21 : 21+idlen])
	if err != nil {
		return nil, fmt.Errorf("keyid: %w", err)
	}
	secret, err := ua.ECDH(asPub)
	if err != nil {
		return nil, err
	}
	// RFC 8291 section 3.3 and 3.4.
	keyInfo := "WebPush: info\x00" + string(ua.PublicKey().Bytes()) + string(asPub.Bytes())
	prkKey, err := hkdf.Extract(sha256.New, secret, authSecret)
	if err != nil {
		return nil, err
	}
	ikm, err := hkdf.Expand(sha256.New, prkKey, keyInfo, 32)
	if err != nil {
		return nil, err
	}
	prk, err := hkdf.Extract(sha256.New, ikm, salt)
	if err != nil {
		return nil, err
	}
	cek, err := hkdf.Expand(sha256.New, prk, "Content-Encoding: aes128gcm\x00", 16)
	if err != nil {
		return nil, err
	}
	nonce, err := hkdf.Expand(sha256.New, prk, "Content-Encoding: nonce\x00", 12)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	// RFC 8188 section 2: records of rs bytes; the nonce of record SEQ is NONCE xor SEQ;
	// a record's plaintext ends with 0x01 (more records follow) or 0x02 (the last), then
	// zero padding.
	data := body[21+idlen:]
	var out []byte
	for seq := uint64(0); len(data) > 0; seq++ {
		n := min(int(rs), len(data))
		rec := data[:n]
		data = data[n:]
		iv := append([]byte(nil), nonce...)
		for i := 0; i < 8; i++ {
			iv[11-i] ^= byte(seq >> (8 * i))
		}
		plain, err := gcm.Open(nil, iv, rec, nil)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", seq, err)
		}
		end := len(plain) - 1
		for end >= 0 && plain[end] == 0 {
			end--
		}
		if end < 0 {
			return nil, fmt.Errorf("record %d has no delimiter", seq)
		}
		last := len(data) == 0
		if last && plain[end] != 2 || !last && plain[end] != 1 {
			return nil, fmt.Errorf("record %d has delimiter %d", seq, plain[end])
		}
		out = append(out, plain[:end]...)
	}
	return out, nil
}
