package console

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/mxgate/mxgate/internal/settings"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

type settingsData struct {
	Entries    []settings.Entry
	Changes    []settings.Change
	Generation int
	Levels     []string
}

// tlsRules lists every rule a form may stage, in tlspolicy's text form: each level, then each level as an
// override. Every committed value is one of them, so a form always shows the value in force.
func tlsRules() []string {
	var out []string
	for _, override := range []bool{false, true} {
		for _, l := range tlspolicy.Levels() {
			out = append(out, tlspolicy.Rule{Level: l, Override: override}.String())
		}
	}
	return out
}

// settingsPage shows the global settings; the per-domain TLS rules have their own page (rulesPage).
func (c *Console) settingsPage(w http.ResponseWriter, r *http.Request, s *session) {
	c.settingsOf(w, r, s, "settings", "Settings", func(e settings.Entry) bool { return !isRule(e.Key) })
}

// rulesPage shows the per-domain TLS rules and the form to add one.
func (c *Console) rulesPage(w http.ResponseWriter, r *http.Request, s *session) {
	c.settingsOf(w, r, s, "rules", "Domain TLS rules", func(e settings.Entry) bool { return isRule(e.Key) })
}

func (c *Console) settingsOf(w http.ResponseWriter, r *http.Request, s *session, page, title string, keep func(settings.Entry) bool) {
	entries, err := c.opts.Settings.List(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	changes, err := c.opts.Settings.Diff(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	var shown []settings.Entry
	for _, e := range entries {
		if keep(e) {
			shown = append(shown, e)
		}
	}
	c.render(w, r, s, http.StatusOK, page, title, settingsData{
		Entries: shown, Changes: changes, Generation: c.opts.Settings.Current().Generation, Levels: tlsRules(),
	})
}

// isRule tells the per-domain TLS rule keys (Domain.<domain>.TLS) from the global settings.
func isRule(key string) bool { return strings.HasPrefix(key, settings.DomainPrefix) }

// pageOf is the page a setting is shown on, where its form returns to.
func pageOf(key string) string {
	if isRule(key) {
		return "/rules"
	}
	return "/settings"
}

func (c *Console) settingsSet(w http.ResponseWriter, r *http.Request, s *session) {
	key := strings.TrimSpace(r.PostForm.Get("key"))
	if dom := strings.TrimSpace(r.PostForm.Get("domain")); dom != "" && key == "" {
		key = settings.DomainPrefix + dom + ".TLS"
	}
	value := strings.TrimSpace(r.PostForm.Get("value"))
	if !c.confirmLowering(w, r, s, key, value, false) {
		return
	}
	msg := fmt.Sprintf("Staged %s = %s. Review and commit to put it in force.", key, value)
	if err := c.opts.Settings.Set(r.Context(), key, value); err != nil {
		msg = "Not staged: " + err.Error()
	} else {
		c.log.Info("console: setting staged", "key", key, "ip", remoteIP(r))
	}
	c.done(w, r, s, pageOf(key), msg)
}

func (c *Console) settingsUnset(w http.ResponseWriter, r *http.Request, s *session) {
	key := strings.TrimSpace(r.PostForm.Get("key"))
	if !c.confirmLowering(w, r, s, key, "", true) {
		return
	}
	msg := fmt.Sprintf("Staged the removal of %s (back to its default). Review and commit to put it in force.", key)
	if err := c.opts.Settings.Unset(r.Context(), key); err != nil {
		msg = "Not staged: " + err.Error()
	} else {
		c.log.Info("console: setting unset staged", "key", key, "ip", remoteIP(r))
	}
	c.done(w, r, s, pageOf(key), msg)
}

type reviewData struct {
	Changes    []settings.Change
	Generation int
}

func (c *Console) settingsReview(w http.ResponseWriter, r *http.Request, s *session) {
	changes, err := c.opts.Settings.Diff(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, s, http.StatusOK, "review", "Review staged settings", reviewData{Changes: changes, Generation: c.opts.Settings.Current().Generation})
}

const consoleAuthor = "console"

func (c *Console) settingsCommit(w http.ResponseWriter, r *http.Request, s *session) {
	note := strings.TrimSpace(r.PostForm.Get("note"))
	if note == "" {
		c.done(w, r, s, "/settings/review", "Not committed: write a note saying why.")
		return
	}
	snap, err := c.opts.Settings.Commit(r.Context(), note, consoleAuthor)
	if err != nil {
		if !errors.Is(err, settings.ErrNoChanges) && !errors.Is(err, settings.ErrRefused) {
			c.log.Error("console: settings commit", "err", err)
		}
		c.done(w, r, s, "/settings/review", "Not committed: "+err.Error())
		return
	}
	c.log.Info("console: settings committed", "generation", snap.Generation, "ip", remoteIP(r))
	c.done(w, r, s, "/settings/history", fmt.Sprintf("Committed generation %d; it is in force now.", snap.Generation))
}

func (c *Console) settingsDiscard(w http.ResponseWriter, r *http.Request, s *session) {
	msg := "Staged changes discarded."
	if err := c.opts.Settings.Discard(r.Context()); err != nil {
		msg = "Not discarded: " + err.Error()
	}
	c.done(w, r, s, "/settings", msg)
}

type historyRow struct {
	settings.Generation
	Current bool
	// InForce: the generation's settings are those in force (rolling back to it changes nothing).
	InForce bool
	Changes []settings.Change
}

type historyData struct {
	Rows []historyRow
	// Staged are the staged changes a rollback would have to discard.
	Staged []settings.Change
}

// genDiff is what changed from generation old to generation new.
func genDiff(old, new map[string]string) []settings.Change {
	var out []settings.Change
	for k, v := range new {
		ov, ok := old[k]
		if !ok || ov != v {
			out = append(out, settings.Change{Key: k, Old: ov, OldSet: ok, New: v, NewSet: true})
		}
	}
	for k, ov := range old {
		if _, ok := new[k]; !ok {
			out = append(out, settings.Change{Key: k, Old: ov, OldSet: true})
		}
	}
	slices.SortFunc(out, func(a, b settings.Change) int { return strings.Compare(a.Key, b.Key) })
	return out
}

func (c *Console) settingsHistory(w http.ResponseWriter, r *http.Request, s *session) {
	hist, err := c.opts.Settings.History(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	var d historyData
	if d.Staged, err = c.opts.Settings.Diff(r.Context()); err != nil {
		c.fail(w, r, s, err)
		return
	}
	for i, g := range hist {
		row := historyRow{Generation: g, Current: i == 0, InForce: maps.Equal(g.Values, hist[0].Values)}
		var prev map[string]string
		if i+1 < len(hist) {
			prev = hist[i+1].Values
		}
		row.Changes = genDiff(prev, g.Values)
		d.Rows = append(d.Rows, row)
	}
	c.render(w, r, s, http.StatusOK, "history", "Settings history", d)
}

func (c *Console) settingsRollback(w http.ResponseWriter, r *http.Request, s *session) {
	gen, err := strconv.Atoi(r.PostForm.Get("generation"))
	if err != nil || gen < 1 {
		c.renderError(w, r, s, http.StatusBadRequest, "invalid generation")
		return
	}
	staged := settings.RefuseStaged
	if r.PostForm.Get("discard") == "staged" {
		staged = settings.DiscardStaged
	}
	res, err := c.opts.Settings.Rollback(r.Context(), gen, strings.TrimSpace(r.PostForm.Get("note")), consoleAuthor, staged)
	if err != nil {
		if !errors.Is(err, settings.ErrNoGeneration) && !errors.Is(err, settings.ErrStaged) && !errors.Is(err, settings.ErrRefused) {
			c.log.Error("console: settings rollback", "err", err)
		}
		c.done(w, r, s, "/settings/history", "Not rolled back: "+err.Error())
		return
	}
	discarded := ""
	if n := len(res.Discarded); n > 0 {
		discarded = fmt.Sprintf(" Discarded %d staged change(s).", n)
	}
	if res.InForce {
		c.done(w, r, s, "/settings/history", fmt.Sprintf("Generation %d has the settings in force (generation %d): nothing to roll back.%s", gen, res.Generation, discarded))
		return
	}
	c.log.Info("console: settings rolled back", "to", gen, "generation", res.Generation, "discarded", len(res.Discarded), "ip", remoteIP(r))
	c.done(w, r, s, "/settings/history", fmt.Sprintf("Rolled back to generation %d as generation %d; it is in force now.%s", gen, res.Generation, discarded))
}
