package channel_test

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/maxloyalty/notify/internal/channel"
	"github.com/maxloyalty/notify/internal/channel/channeltest"
)

func newEmail(t *testing.T, srv *channeltest.SMTPServer, cfg channel.EmailConfig) *channel.Email {
	t.Helper()
	cfg.Host, cfg.Port = srv.Host(), srv.Port()
	if cfg.From == "" {
		cfg.From = "Max Loyalty <noreply@maxloyalty.example>"
	}
	if cfg.RootCAs == nil {
		cfg.RootCAs = srv.CertPool()
	}
	e, err := channel.NewEmail(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// parsedMail is a received message, parsed.
type parsedMail struct {
	header      mail.Header
	text, html  string
	textCharset string
}

func parseMail(t *testing.T, data []byte) parsedMail {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("received message does not parse: %v\n%s", err, data)
	}
	p := parsedMail{header: msg.Header}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type %q (%v), want multipart/alternative", msg.Header.Get("Content-Type"), err)
	}
	r := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var body io.Reader = part
		if part.Header.Get("Content-Transfer-Encoding") == "quoted-printable" {
			body = quotedprintable.NewReader(part)
		}
		b, err := io.ReadAll(body)
		if err != nil {
			t.Fatal(err)
		}
		pt, pp, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
		switch pt {
		case "text/plain":
			p.text, p.textCharset = string(b), pp["charset"]
		case "text/html":
			p.html = string(b)
		default:
			t.Errorf("unexpected part %q", pt)
		}
	}
	return p
}

func TestEmailSTARTTLSWithAuth(t *testing.T) {
	srv := channeltest.NewSMTPServer(t, channeltest.SMTPOptions{TLS: true, Username: "notify", Password: "hunter2-smtp"})
	e := newEmail(t, srv, channel.EmailConfig{Username: "notify", Password: "hunter2-smtp"})
	m := message(t, "fr-FR")
	to := channel.EmailTarget{Address: "guest@example.com", Name: "Zoé Martin", UnsubscribeURL: "https://app.maxloyalty.example/unsubscribe?u=g1&t=abc"}

	res := e.Send(ctx(t), to, m)
	want(t, res, channel.Accepted, 250, 0)
	got := srv.Received()
	if len(got) != 1 {
		t.Fatalf("server received %d messages", len(got))
	}
	r := got[0]
	if !r.TLS || r.User != "notify" || r.From != "noreply@maxloyalty.example" || len(r.To) != 1 || r.To[0] != "guest@example.com" {
		t.Fatalf("session: TLS %v user %q from %q to %v", r.TLS, r.User, r.From, r.To)
	}
	p := parseMail(t, r.Data)
	dec := new(mime.WordDecoder)
	subject, _ := dec.DecodeHeader(p.header.Get("Subject"))
	from, _ := p.header.AddressList("From")
	toList, _ := p.header.AddressList("To")
	if spaces(subject) != "+1 250 points au restaurant Chez Max & Fils" {
		t.Errorf("Subject %q", subject)
	}
	if len(from) != 1 || from[0].Address != "noreply@maxloyalty.example" || from[0].Name != "Max Loyalty" {
		t.Errorf("From %v", from)
	}
	if len(toList) != 1 || toList[0].Address != "guest@example.com" || toList[0].Name != "Zoé Martin" {
		t.Errorf("To %v", toList)
	}
	if id := p.header.Get("Message-Id"); id != "<"+e.MessageID(m, to.Address)+">" || !strings.HasSuffix(id, "@maxloyalty.example>") {
		t.Errorf("Message-ID %q, want <%s>", id, e.MessageID(m, to.Address))
	}
	if lu := p.header.Get("List-Unsubscribe"); lu != "<"+to.UnsubscribeURL+">" {
		t.Errorf("List-Unsubscribe %q", lu)
	}
	if p.header.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" || p.header.Get("Auto-Submitted") != "auto-generated" {
		t.Errorf("List-Unsubscribe-Post %q, Auto-Submitted %q", p.header.Get("List-Unsubscribe-Post"), p.header.Get("Auto-Submitted"))
	}
	if p.header.Get("Date") == "" {
		t.Error("no Date")
	}
	if p.textCharset != "UTF-8" && p.textCharset != "utf-8" {
		t.Errorf("text charset %q", p.textCharset)
	}
	for _, s := range []string{"Bonjour,", "Vous avez gagné 1 250 points au restaurant Chez Max & Fils (Lunch <for two>).",
		"Votre solde est maintenant de 4 600 points.", "notifications par e-mail sont activées"} {
		if !strings.Contains(spaces(p.text), s) {
			t.Errorf("text part lacks %q:\n%s", s, p.text)
		}
	}
	for _, s := range []string{`<html lang="fr">`, "<strong>1 250 points</strong>", "Chez Max &amp; Fils (Lunch &lt;for two&gt;)",
		"<strong>4 600 points</strong>"} {
		if !strings.Contains(spaces(p.html), s) {
			t.Errorf("HTML part lacks %q:\n%s", s, p.html)
		}
	}
	if strings.Contains(p.html, "<for two>") {
		t.Error("HTML part carries the event's text unescaped")
	}
	noSecret(t, "message", string(r.Data), "hunter2-smtp")

	// A retry of the same event to the same address has the same Message-ID.
	want(t, e.Send(ctx(t), to, m), channel.Accepted, 250, 0)
	if again := parseMail(t, srv.Received()[1].Data); again.header.Get("Message-Id") != p.header.Get("Message-Id") {
		t.Errorf("retry Message-ID %q, first %q", again.header.Get("Message-Id"), p.header.Get("Message-Id"))
	}
}

func TestEmailPlainRelay(t *testing.T) {
	srv := channeltest.NewSMTPServer(t, channeltest.SMTPOptions{})
	e := newEmail(t, srv, channel.EmailConfig{Security: channel.EmailPlain})
	alert := `{"id":"e9","room":"admin","systemAlert":{"level":"ALERT_LEVEL_CRITICAL","title":"Broker down",` +
		`"message":"Redis is unreachable.","source":"ALERT_SOURCE_SYSTEM","occurredAt":"2026-03-14T09:26:53Z"}}`
	c, err := channel.Render("EVENT_TYPE_SYSTEM_ALERT", "en", []byte(alert))
	if err != nil {
		t.Fatal(err)
	}
	m := &channel.Message{EventID: "e9", Type: "EVENT_TYPE_SYSTEM_ALERT", Content: c, Critical: true}
	want(t, e.Send(ctx(t), channel.EmailTarget{Address: "admin@example.com"}, m), channel.Accepted, 250, 0)
	r := srv.Received()[0]
	if r.TLS || r.User != "" || r.To[0] != "admin@example.com" {
		t.Fatalf("session: TLS %v user %q to %v", r.TLS, r.User, r.To)
	}
	p := parseMail(t, r.Data)
	if s := p.header.Get("Subject"); s != "Critical alert: Broker down" {
		t.Errorf("Subject %q", s)
	}
	if p.header.Get("Importance") != "High" && p.header.Get("Importance") != "high" {
		t.Errorf("Importance %q", p.header.Get("Importance"))
	}
	if !strings.Contains(p.text, "Redis is unreachable.") || !strings.Contains(p.text, "Raised on March 14, 2026 at 09:26 UTC.") {
		t.Errorf("text part:\n%s", p.text)
	}
	if p.header.Get("List-Unsubscribe") != "" {
		t.Error("List-Unsubscribe without an unsubscribe URL")
	}
}

func TestEmailAnswers(t *testing.T) {
	srv := channeltest.NewSMTPServer(t, channeltest.SMTPOptions{TLS: true, Username: "notify", Password: "pw",
		RcptErrors: map[string]*smtp.SMTPError{
			"nobody@example.com": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"},
			"full@example.com":   {Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full"},
		}})
	e := newEmail(t, srv, channel.EmailConfig{Username: "notify", Password: "pw"})
	m := message(t, "en")

	res := e.Send(ctx(t), channel.EmailTarget{Address: "nobody@example.com"}, m)
	want(t, res, channel.Permanent, 550, 0)
	if !strings.Contains(res.Reason, "No such user") {
		t.Errorf("reason %q", res.Reason)
	}
	want(t, e.Send(ctx(t), channel.EmailTarget{Address: "full@example.com"}, m), channel.Retryable, 452, 0)

	bad := newEmail(t, srv, channel.EmailConfig{Username: "notify", Password: "wrong-password"})
	res = bad.Send(ctx(t), channel.EmailTarget{Address: "guest@example.com"}, m)
	want(t, res, channel.Permanent, 535, 0)
	noSecret(t, "result", res.Err.Error()+res.Reason, "wrong-password")

	rejecting := channeltest.NewSMTPServer(t, channeltest.SMTPOptions{
		DataError: &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message rejected"}})
	want(t, newEmail(t, rejecting, channel.EmailConfig{Security: channel.EmailPlain}).
		Send(ctx(t), channel.EmailTarget{Address: "guest@example.com"}, m), channel.Permanent, 554, 0)

	busy := channeltest.NewSMTPServer(t, channeltest.SMTPOptions{
		DataError: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try later"}})
	want(t, newEmail(t, busy, channel.EmailConfig{Security: channel.EmailPlain}).
		Send(ctx(t), channel.EmailTarget{Address: "guest@example.com"}, m), channel.Retryable, 451, 0)

	if n := len(srv.Received()) + len(rejecting.Received()) + len(busy.Received()); n != 0 {
		t.Errorf("%d messages taken", n)
	}
}

func TestEmailConnection(t *testing.T) {
	m := message(t, "en")
	to := channel.EmailTarget{Address: "guest@example.com"}

	// STARTTLS is required by default: a relay that does not offer it gets nothing.
	plain := channeltest.NewSMTPServer(t, channeltest.SMTPOptions{Username: "notify", Password: "pw"})
	res := newEmail(t, plain, channel.EmailConfig{Username: "notify", Password: "pw"}).Send(ctx(t), to, m)
	want(t, res, channel.Permanent, 0, 0)

	// A certificate the sender does not trust.
	tlsSrv := channeltest.NewSMTPServer(t, channeltest.SMTPOptions{TLS: true})
	untrusted := newEmail(t, tlsSrv, channel.EmailConfig{RootCAs: channeltest.NewSMTPServer(t, channeltest.SMTPOptions{TLS: true}).CertPool()})
	want(t, untrusted.Send(ctx(t), to, m), channel.Permanent, 0, 0)
	if len(plain.Received())+len(tlsSrv.Received()) != 0 {
		t.Error("a message was sent over an unprotected connection")
	}

	// Nobody listening: retryable.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	down, err := channel.NewEmail(channel.EmailConfig{Host: "127.0.0.1", Port: port, From: "noreply@maxloyalty.example"})
	if err != nil {
		t.Fatal(err)
	}
	want(t, down.Send(ctx(t), to, m), channel.Retryable, 0, 0)

	res = down.Send(ctx(t), channel.EmailTarget{Address: "guest@example.com\r\nBcc: x@y.z"}, m)
	want(t, res, channel.Permanent, 0, 0)
	isErr(t, res.Err, channel.ErrInvalidTarget)
}
