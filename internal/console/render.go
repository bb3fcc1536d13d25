package console

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"
)

// pageNames are the templates under templates/, each rendered inside layout.html.
func pageNames() []string {
	return []string{
		"login", "error", "dashboard", "queue", "message", "confirm", "bulk", "domains", "domain",
		"reports", "preview", "settings", "review", "history", "account", "lowertls", "trace", "rules", "nodes",
	}
}

func funcs() template.FuncMap {
	return template.FuncMap{
		"time": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.UTC().Format("2006-01-02 15:04:05Z")
		},
		"day": func(t time.Time) string { return t.UTC().Format("2006-01-02") },
		"hhmm": func(t time.Time) string {
			return t.UTC().Format("15:04")
		},
		"dur":  humanDuration,
		"secs": func(d time.Duration) int64 { return int64(d / time.Second) },
		"pct":  pct,
		"join": strings.Join,
		"add":  func(a, b int) int { return a + b },
	}
}

func parsePages() (map[string]*template.Template, error) {
	base, err := template.New("layout.html").Funcs(funcs()).ParseFS(templateFS, "templates/layout.html", "templates/settingrows.html")
	if err != nil {
		return nil, fmt.Errorf("console: templates: %w", err)
	}
	pages := map[string]*template.Template{}
	for _, name := range pageNames() {
		t, err := base.Clone()
		if err == nil {
			_, err = t.ParseFS(templateFS, "templates/"+name+".html")
		}
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// humanDuration is a duration for people: "3h 12m", "45s".
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	default:
		return fmt.Sprintf("%dd %dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
	}
}

func pct(part, whole int) string {
	if whole == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(part)/float64(whole))
}

// layoutData is what layout.html shows around every page.
type layoutData struct {
	Title    string
	Nav      string
	LoggedIn bool
	CSRF     string
	// Account is the logged-in account; Admin is set when it may change state (forms are shown).
	Account string
	Admin   bool
	Flash   string
	// Staged counts the staged settings changes (the banner).
	Staged int
	Now    time.Time
	Page   any
}

// render writes page name with data. s is nil on the login page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, s *session, code int, name, title string, data any) {
	ld := layoutData{Title: title, Nav: navOf(name), Now: c.now(), Page: data}
	if s != nil {
		ld.LoggedIn, ld.CSRF = true, s.csrf
		ld.Account, ld.Admin = s.account, s.role == Administrator
		ld.Flash = c.sessions.takeFlash(s.id)
		if changes, err := c.opts.Settings.Diff(r.Context()); err == nil {
			ld.Staged = len(changes)
		}
	}
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout.html", ld); err != nil {
		c.log.Error("console: render", "page", name, "err", err)
		http.Error(w, "internal error rendering the page; see the server log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	buf.WriteTo(w)
}

func navOf(page string) string {
	switch page {
	case "queue", "message", "confirm", "bulk":
		return "queue"
	case "domains", "domain":
		return "domains"
	case "reports", "preview":
		return "reports"
	case "settings", "review", "history":
		return "settings"
	case "rules", "lowertls":
		return "rules"
	}
	return page
}

type errorData struct {
	Code    int
	Status  string
	Message string
}

func (c *Console) renderError(w http.ResponseWriter, r *http.Request, s *session, code int, msg string) {
	c.render(w, r, s, code, "error", http.StatusText(code), errorData{Code: code, Status: http.StatusText(code), Message: msg})
}
