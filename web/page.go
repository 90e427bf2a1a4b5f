package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/net/idna"

	"github.com/tlsgate/tlsgate/internal/report"
	"github.com/tlsgate/tlsgate/internal/safetext"
	"github.com/tlsgate/tlsgate/milter"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

//go:embed assets
var assets embed.FS

// page is the check page. html/template escapes every value for its context; remote
// text (MX names, greetings, certificate names, details) also goes through remote.
var page = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"remote": remote,
	"when":   func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"date":   func(t time.Time) string { return t.UTC().Format("2006-01-02") },
	"join":   strings.Join,
	"deref":  func(b *bool) bool { return b != nil && *b },
}).ParseFS(assets, "assets/page.html"))

// remote makes remote text safe to show beyond HTML escaping: every character that is
// not printable (controls, bidirectional overrides and isolates, line separators) is
// shown as a \u escape, so it cannot reorder or hide what the page says around it.
func remote(s string) string {
	s = safetext.Bound(s, safetext.MaxField)
	if !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsPrint(r) {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, "\\u%04x", r)
		}
	}
	return b.String()
}

// pageLevels are the levels the page judges every domain at, weakest first.
var pageLevels = []policy.Level{policy.LevelEncrypt, policy.LevelVerify, policy.LevelSecure, policy.LevelDane, policy.LevelDaneOnly, policy.LevelPublished}

// levelHelp is the form's description of each level.
var levelHelp = map[policy.Level]string{
	policy.LevelEncrypt:   "encrypt: any TLS",
	policy.LevelVerify:    "verify: TLS, certificate verified",
	policy.LevelSecure:    "secure: TLS, certificate verified for the domain",
	policy.LevelDane:      "dane: DANE where published, else TLS if offered",
	policy.LevelDaneOnly:  "dane-only: DANE required",
	policy.LevelPublished: "published: DANE, else MTA-STS",
}

type pageData struct {
	Domain, Level string // as the user typed them
	Options       []option
	Status        int
	Error         string
	Refresh       int // seconds after which the page reloads itself (a check in progress)
	Result        *pageResult
}

type option struct {
	Value, Label string
	Selected     bool
}

type pageResult struct {
	Domain    string // A-label
	Unicode   string // U-label when it differs
	Selected  levelRow
	Levels    []levelRow
	Rule      string // what chose the level, in words
	Report    report.Report
	Checked   time.Time
	Until     time.Time
	Cached    bool
	TLS       []string // TLS versions seen
	Socketmap string
}

type levelRow struct {
	Level, Status, Word, Sentence, Detail string
	Chosen                                bool
}

// statusWord is the verdict in words: the page does not rely on colour.
func statusWord(s verify.Status) string {
	switch s {
	case verify.StatusPass:
		return "PASS"
	case verify.StatusFail:
		return "FAIL"
	}
	return "TRY LATER"
}

func row(v verify.Verdict) levelRow {
	return levelRow{Level: v.Level.String(), Status: v.Status.String(), Word: statusWord(v.Status),
		Sentence: milter.Sentence(v), Detail: v.Detail}
}

func (s *Server) options(selected string) []option {
	out := []option{{Value: "", Label: "the level configured for the domain (else encrypt)", Selected: selected == ""}}
	for _, l := range s.cfg.Levels {
		label := levelHelp[l]
		if label == "" {
			label = l.String()
		}
		out = append(out, option{Value: l.String(), Label: label, Selected: selected == l.String()})
	}
	return out
}

// GET /[?domain=D[&level=L]]: the form, and with a domain the verdict per level.
func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		s.cfg.OnRequest("other", "not_found")
		http.NotFound(w, r)
		return
	}
	qv := r.URL.Query()
	data := pageData{Domain: qv.Get("domain"), Level: qv.Get("level"), Status: http.StatusOK}
	data.Options = s.options(strings.TrimSpace(data.Level))
	_, f := s.admit(r, data.Domain != "")
	if f == nil && data.Domain != "" {
		var q checkQuery
		if q, f = parseCheck(data.Domain, data.Level, ""); f == nil {
			var res *Result
			if res, f = s.check(r, q); f == nil {
				data.Result = s.result(res)
			}
		}
	}
	if f != nil {
		if f.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(f.retryAfter))
		}
		if f.status == http.StatusUnauthorized {
			challenge(w)
		}
		data.Status, data.Error = f.status, f.msg
		if f.code == "in_progress" {
			data.Refresh = f.retryAfter
		}
		s.cfg.OnRequest("page", f.code)
	} else {
		s.cfg.OnRequest("page", "ok")
	}
	var b bytes.Buffer
	if err := page.Execute(&b, data); err != nil {
		s.cfg.Log.Error("web page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(data.Status)
	_, _ = w.Write(b.Bytes())
}

func (s *Server) result(res *Result) *pageResult {
	f := res.Facts
	out := &pageResult{Domain: f.Domain, Rule: ruleText(res.Rule), Checked: f.Checked, Until: f.Until, Cached: res.Cached,
		Report: report.New(f, res.Verdict, res.Rule)}
	if u, err := idna.Display.ToUnicode(f.Domain); err == nil && u != f.Domain {
		out.Unicode = u
	}
	out.Selected = row(res.Verdict)
	for _, l := range s.cfg.Levels {
		r := row(f.JudgeCached(policy.Policy{Level: l}))
		if l == res.Verdict.Level {
			r = out.Selected
			r.Chosen = true
		}
		out.Levels = append(out.Levels, r)
	}
	seen := map[string]bool{}
	for _, h := range out.Report.MX {
		for _, a := range h.Attempts {
			if a.TLSVersion != "" && !seen[a.TLSVersion] {
				seen[a.TLSVersion] = true
				out.TLS = append(out.TLS, a.TLSVersion)
			}
		}
	}
	return out
}

// ruleText says what chose the level (checkPolicy's rule) in the page's words.
func ruleText(rule string) string {
	switch {
	case rule == "--level":
		return "the level chosen in the form"
	case rule == "default":
		return "no policy applies to the domain; encrypt is shown"
	case strings.HasPrefix(rule, "policy:"):
		return "the policy for " + strings.TrimPrefix(rule, "policy:")
	case strings.HasPrefix(rule, "customer:"):
		return "customer " + strings.TrimPrefix(rule, "customer:")
	}
	return rule
}

// GET /static/NAME: the embedded style sheet.
func (s *Server) static(w http.ResponseWriter, r *http.Request) {
	name := path.Base(r.URL.Path)
	b, err := assets.ReadFile("assets/" + name)
	if err != nil || !strings.HasSuffix(name, ".css") {
		s.cfg.OnRequest("static", "not_found")
		http.NotFound(w, r)
		return
	}
	s.cfg.OnRequest("static", "ok")
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(b)
}
