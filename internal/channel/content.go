package channel

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	texttemplate "text/template"
	"time"
	"unicode/utf8"

	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

//go:embed templates
var templateFS embed.FS

// Locales are the languages Render writes, the first being the fallback.
var Locales = []string{"en", "fr"}

// Bounds of rendered push text: providers cut longer text themselves, less gracefully.
const (
	maxTitleRunes = 120
	maxBodyRunes  = 400
)

// Render writes the content of a notification for an event of type typ ("EVENT_TYPE_POINTS_ADDED"),
// whose JSON (the protojson Event envelope, or the event's payload alone) is event, in the
// recipient's locale ("fr-CA" is French; an unknown or empty locale is English). Points
// events and system alerts have their own templates; other types get a generic text built
// from the event's title and message when it has them. Event fields are escaped in the
// HTML part.
func Render(typ, locale string, event []byte) (Content, error) {
	set, err := loadTemplates()
	if err != nil {
		return Content{}, err
	}
	lang := pickLocale(locale)
	name := templateName(typ)
	tt, ok := set.text[lang+"/"+name]
	if !ok {
		name = "default"
		tt = set.text[lang+"/"+name]
	}
	ht := set.html[lang+"/"+name]
	d, err := templateDataFor(lang, event)
	if err != nil {
		return Content{}, err
	}
	var c Content
	run := func(name string) (string, error) {
		var b bytes.Buffer
		if err := tt.ExecuteTemplate(&b, name, d); err != nil {
			return "", fmt.Errorf("channel: render %s/%s: %w", lang, name, err)
		}
		return b.String(), nil
	}
	if c.Title, err = run("title"); err != nil {
		return Content{}, err
	}
	if c.Body, err = run("body"); err != nil {
		return Content{}, err
	}
	if c.Text, err = run("text"); err != nil {
		return Content{}, err
	}
	if d.Footer, err = run("footer"); err != nil {
		return Content{}, err
	}
	c.Title = truncateRunes(oneLine(c.Title), maxTitleRunes)
	c.Body = truncateRunes(oneLine(c.Body), maxBodyRunes)
	d.Title = c.Title
	var b bytes.Buffer
	if err := ht.ExecuteTemplate(&b, "layout", d); err != nil {
		return Content{}, fmt.Errorf("channel: render %s/%s html: %w", lang, name, err)
	}
	c.HTML = b.String()
	return c, nil
}

// templateData is what templates see.
type templateData struct {
	// Lang is the locale rendered, "en" or "fr".
	Lang string
	// Event holds the envelope's scalar fields (id, room, publishTime).
	Event map[string]string
	// P holds the event payload's fields, as strings; a missing field is "".
	P map[string]string
	// Title and Footer are set for the HTML layout.
	Title  string
	Footer string
}

// envelopeFields are the notify.v1.Event fields that are not the payload.
var envelopeFields = map[string]bool{
	"id": true, "room": true, "offset": true, "epoch": true, "publishTime": true, "idempotencyKey": true,
}

func templateDataFor(lang string, event []byte) (*templateData, error) {
	d := &templateData{Lang: lang, Event: map[string]string{}, P: map[string]string{}}
	if len(bytes.TrimSpace(event)) == 0 {
		return d, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(event, &top); err != nil {
		return nil, fmt.Errorf("channel: render: event is not a JSON object: %w", err)
	}
	payload := top
	for k, v := range top {
		if envelopeFields[k] {
			continue
		}
		var inner map[string]json.RawMessage
		if json.Unmarshal(v, &inner) == nil && inner != nil {
			payload = inner
			d.Event = flatten(top)
			break
		}
	}
	d.P = flatten(payload)
	return d, nil
}

// flatten keeps an object's scalar fields as text: strings as they are, numbers and
// booleans as written.
func flatten(o map[string]json.RawMessage) map[string]string {
	out := make(map[string]string, len(o))
	for k, v := range o {
		var s string
		if json.Unmarshal(v, &s) == nil {
			out[k] = s
			continue
		}
		t := strings.TrimSpace(string(v))
		if t != "" && t[0] != '{' && t[0] != '[' && t != "null" {
			out[k] = t
		}
	}
	return out
}

type templateSet struct {
	text map[string]*texttemplate.Template
	html map[string]*htmltemplate.Template
}

var (
	templatesOnce sync.Once
	templates     *templateSet
	templatesErr  error
)

func loadTemplates() (*templateSet, error) {
	templatesOnce.Do(func() { templates, templatesErr = parseTemplates() })
	return templates, templatesErr
}

func parseTemplates() (*templateSet, error) {
	set := &templateSet{text: map[string]*texttemplate.Template{}, html: map[string]*htmltemplate.Template{}}
	for _, lang := range Locales {
		files, err := fs.Glob(templateFS, "templates/"+lang+"/*.tmpl")
		if err != nil {
			return nil, err
		}
		fns := funcs(lang)
		for _, f := range files {
			name := strings.TrimSuffix(f[strings.LastIndexByte(f, '/')+1:], ".tmpl")
			if name == "common" {
				continue
			}
			tt, err := texttemplate.New(name).Option("missingkey=zero").Funcs(texttemplate.FuncMap(fns)).
				ParseFS(templateFS, "templates/"+lang+"/common.tmpl", f)
			if err != nil {
				return nil, fmt.Errorf("channel: templates: %w", err)
			}
			ht, err := htmltemplate.New(name).Option("missingkey=zero").Funcs(htmltemplate.FuncMap(fns)).
				ParseFS(templateFS, "templates/layout.html", "templates/"+lang+"/"+name+".html")
			if err != nil {
				return nil, fmt.Errorf("channel: templates: %w", err)
			}
			for _, def := range []string{"title", "body", "text", "footer"} {
				if tt.Lookup(def) == nil {
					return nil, fmt.Errorf("channel: templates: %s defines no %q", f, def)
				}
			}
			set.text[lang+"/"+name] = tt
			set.html[lang+"/"+name] = ht
		}
		if set.text[lang+"/default"] == nil {
			return nil, errors.New("channel: templates: no default template for " + lang)
		}
	}
	return set, nil
}

// pickLocale returns the supported language of a BCP 47 tag, or the fallback.
func pickLocale(locale string) string {
	base, _, _ := strings.Cut(strings.ReplaceAll(locale, "_", "-"), "-")
	base = strings.ToLower(base)
	for _, l := range Locales {
		if l == base {
			return l
		}
	}
	return Locales[0]
}

// templateName turns "EVENT_TYPE_POINTS_ADDED" into "points_added".
func templateName(typ string) string {
	return strings.ToLower(strings.TrimPrefix(typ, "EVENT_TYPE_"))
}

var alertLevels = map[string]map[string]string{
	"en": {
		"ALERT_LEVEL_INFO": "Information", "ALERT_LEVEL_WARNING": "Warning",
		"ALERT_LEVEL_ERROR": "Error", "ALERT_LEVEL_CRITICAL": "Critical alert", "": "Alert",
	},
	"fr": {
		"ALERT_LEVEL_INFO": "Information", "ALERT_LEVEL_WARNING": "Avertissement",
		"ALERT_LEVEL_ERROR": "Erreur", "ALERT_LEVEL_CRITICAL": "Alerte critique", "": "Alerte",
	},
}

var frenchMonths = [...]string{"janvier", "février", "mars", "avril", "mai", "juin", "juillet",
	"août", "septembre", "octobre", "novembre", "décembre"}

// funcs are the template functions of one language: num formats an integer with the
// language's grouping, level names an alert level, date writes a day (YYYY-MM-DD or
// RFC 3339; times in UTC).
func funcs(lang string) map[string]any {
	printer := message.NewPrinter(language.Make(lang))
	return map[string]any{
		"num": func(s string) string {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return s
			}
			return printer.Sprintf("%d", n)
		},
		"level": func(s string) string {
			if v, ok := alertLevels[lang][s]; ok {
				return v
			}
			return alertLevels[lang][""]
		},
		"date": func(s string) string {
			t, err := time.Parse(time.DateOnly, s)
			withTime := false
			if err != nil {
				if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
					return s
				}
				t, withTime = t.UTC(), true
			}
			var out string
			if lang == "fr" {
				out = fmt.Sprintf("%d %s %d", t.Day(), frenchMonths[t.Month()-1], t.Year())
				if withTime {
					out += t.Format(" à 15:04 UTC")
				}
				return out
			}
			out = t.Format("January 2, 2006")
			if withTime {
				out += t.Format(" at 15:04 UTC")
			}
			return out
		},
	}
}

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
