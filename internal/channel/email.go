package channel

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"net/textproto"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
	gosmtp "github.com/wneessen/go-mail/smtp"
)

// EmailSecurity is how the email sender protects its SMTP connection.
type EmailSecurity string

// The connection security modes.
const (
	// EmailSTARTTLS upgrades the connection with STARTTLS and refuses a server that does
	// not offer it (submission, port 587). The default.
	EmailSTARTTLS EmailSecurity = "starttls"
	// EmailTLS speaks TLS from the first byte (submissions, port 465).
	EmailTLS EmailSecurity = "tls"
	// EmailPlain never encrypts: only for a relay on the same host or network.
	EmailPlain EmailSecurity = "none"
)

// EmailConfig configures the SMTP sender. A provider such as SendGrid or Amazon SES is
// an SMTP relay configured here like any other.
type EmailConfig struct {
	// Host is the SMTP server's name, also checked against its certificate. Required.
	Host string
	// Port is the SMTP server's port; zero is 587 (465 with EmailTLS, 25 with EmailPlain).
	Port int
	// Security is the connection's protection; "" is EmailSTARTTLS.
	Security EmailSecurity
	// Username and Password authenticate with AUTH PLAIN when Username is set; PLAIN is
	// refused on an unencrypted connection except to localhost.
	Username string
	Password Secret
	// From is the sender, "Max Loyalty <noreply@example.com>". Required.
	From string
	// MessageIDDomain is the right-hand side of Message-IDs; "" is From's domain.
	MessageIDDomain string
	// Timeout bounds one send (connect, TLS, AUTH, the transaction); zero is 30 s.
	Timeout time.Duration
	// RootCAs replaces the system's trusted roots when set (tests, private relays).
	RootCAs *x509.CertPool
}

// Email sends a message's Content as a multipart/alternative email (text, and HTML
// when there is some) through an SMTP relay with wneessen/go-mail, one connection per
// send.
type Email struct {
	cfg     EmailConfig
	from    *mail.Address
	idHost  string
	timeout time.Duration
}

// NewEmail checks cfg and returns a sender. It does not connect until the first Send.
func NewEmail(cfg EmailConfig) (*Email, error) {
	if cfg.Host == "" {
		return nil, errors.New("channel: email: host is required")
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("channel: email: from: %w", err)
	}
	switch cfg.Security {
	case "":
		cfg.Security = EmailSTARTTLS
	case EmailSTARTTLS, EmailTLS, EmailPlain:
	default:
		return nil, fmt.Errorf("channel: email: unknown security %q", cfg.Security)
	}
	if cfg.Port == 0 {
		cfg.Port = map[EmailSecurity]int{EmailSTARTTLS: 587, EmailTLS: 465, EmailPlain: 25}[cfg.Security]
	}
	idHost := cfg.MessageIDDomain
	if idHost == "" {
		idHost = from.Address[strings.LastIndexByte(from.Address, '@')+1:]
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return &Email{cfg: cfg, from: from, idHost: idHost, timeout: timeout}, nil
}

// Channel implements Sender.
func (*Email) Channel() Channel { return ChannelEmail }

// Validate checks that t is one bare address.
func (t EmailTarget) Validate() error {
	a, err := mail.ParseAddress(t.Address)
	if err != nil || a.Address != t.Address || strings.ContainsAny(t.Name, "\r\n") {
		return fmt.Errorf("%w: email address", ErrInvalidTarget)
	}
	return nil
}

// MessageID is the Message-ID of m's email to address: the same on every retry, so a
// recipient's system can recognise a repeat.
func (e *Email) MessageID(m *Message, address string) string {
	sum := sha256.Sum256([]byte(m.EventID + "\x00" + strings.ToLower(address)))
	return hex.EncodeToString(sum[:16]) + "@" + e.idHost
}

// Send implements Sender.
func (e *Email) Send(ctx context.Context, to Target, m *Message) Result {
	t, ok := to.(EmailTarget)
	if !ok {
		return permanent(0, "", ErrWrongTarget)
	}
	if err := t.Validate(); err != nil {
		return permanent(0, "", err)
	}
	msg, err := e.message(t, m)
	if err != nil {
		return permanent(0, "", err)
	}
	client, err := e.client()
	if err != nil {
		return permanent(0, "", err)
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	if err := client.DialAndSendWithContext(ctx, msg); err != nil {
		if msg.IsDelivered() {
			// The server took the message; only closing the session failed.
			return Result{Outcome: Accepted, Status: 250, ProviderID: e.providerID(msg)}
		}
		return classifySMTP(err)
	}
	return Result{Outcome: Accepted, Status: 250, ProviderID: e.providerID(msg)}
}

func (e *Email) providerID(msg *gomail.Msg) string {
	if r := excerpt(msg.ServerResponse()); r != "" {
		return r
	}
	return "<" + msg.GetMessageID() + ">"
}

func (e *Email) message(t EmailTarget, m *Message) (*gomail.Msg, error) {
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	msg.FromMailAddress(e.from)
	msg.ToMailAddress(&mail.Address{Name: t.Name, Address: t.Address})
	msg.Subject(oneLine(m.Title))
	msg.SetMessageIDWithValue(e.MessageID(m, t.Address))
	msg.SetDate()
	msg.SetGenHeader("Auto-Submitted", "auto-generated")
	if t.UnsubscribeURL != "" {
		if strings.HasPrefix(t.UnsubscribeURL, "https://") {
			if err := msg.SetListUnsubscribeOneClick(t.UnsubscribeURL); err != nil {
				return nil, fmt.Errorf("channel: email: unsubscribe URL: %w", err)
			}
		} else {
			msg.SetListUnsubscribe("<" + t.UnsubscribeURL + ">")
		}
	}
	if m.Critical {
		msg.SetImportance(gomail.ImportanceHigh)
	}
	text := m.Text
	if text == "" {
		text = m.Body
	}
	msg.SetBodyString(gomail.TypeTextPlain, text)
	if m.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	}
	return msg, nil
}

func (e *Email) client() (*gomail.Client, error) {
	opts := []gomail.Option{
		gomail.WithPort(e.cfg.Port),
		gomail.WithTimeout(e.timeout),
		gomail.WithTLSConfig(&tls.Config{ServerName: e.cfg.Host, RootCAs: e.cfg.RootCAs, MinVersion: tls.VersionTLS12}),
	}
	switch e.cfg.Security {
	case EmailSTARTTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case EmailTLS:
		opts = append(opts, gomail.WithSSL())
	case EmailPlain:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	}
	if e.cfg.Username != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthPlain),
			gomail.WithUsername(e.cfg.Username), gomail.WithPassword(string(e.cfg.Password)))
	}
	c, err := gomail.NewClient(e.cfg.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("channel: email: %w", err)
	}
	return c, nil
}

// classifySMTP maps an SMTP failure: a 4xx reply is retryable, a 5xx permanent (a
// recipient refused with 550 included: the address belongs to the user's profile, which
// the sender does not own); no reply at all (network, timeout) is retryable, an
// untrusted certificate or a relay that cannot do what the configuration asks permanent.
func classifySMTP(err error) Result {
	code, reply := 0, ""
	var se *gomail.SendError
	var te *textproto.Error
	switch {
	case errors.As(err, &te):
		code, reply = te.Code, fmt.Sprintf("%d %s", te.Code, te.Msg)
	case errors.As(err, &se):
		code = se.ErrorCode()
		reply = se.Error()
	}
	switch {
	case code >= 400 && code < 500:
		return retryable(code, reply, 0, fmt.Errorf("channel: email: %w", err))
	case code >= 500:
		return permanent(code, reply, fmt.Errorf("channel: email: %w", err))
	case se != nil && se.IsTemp():
		return retryable(0, reply, 0, fmt.Errorf("channel: email: %w", err))
	case isCertificateError(err) || relayRefused(err):
		// An untrusted certificate, no STARTTLS, no AUTH PLAIN: the relay's configuration.
		return permanent(0, excerpt(err.Error()), fmt.Errorf("channel: email: %w", err))
	}
	return retryable(0, "", 0, fmt.Errorf("channel: email: %w", err))
}

// relayRefused tells the failures that come from the relay's configuration, not from a
// transient state.
func relayRefused(err error) bool {
	if errors.Is(err, gomail.ErrPlainAuthNotSupported) || errors.Is(err, gosmtp.ErrUnencrypted) ||
		errors.Is(err, gosmtp.ErrWrongHostname) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "does not support STARTTLS") || strings.Contains(s, "does not support SMTP AUTH")
}

// oneLine joins a header value's lines.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
