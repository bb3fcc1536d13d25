package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/mxgate/mxgate/internal/settings"
)

// SettingsAPI is what the API needs of the committed settings; *settings.Store implements it.
type SettingsAPI interface {
	Current() settings.Snapshot
	List(ctx context.Context) ([]settings.Entry, error)
	Set(ctx context.Context, key, value string) error
	Unset(ctx context.Context, key string) error
	Apply(ctx context.Context, vals map[string]string) error
	Diff(ctx context.Context) ([]settings.Change, error)
	Discard(ctx context.Context) error
	Commit(ctx context.Context, note, author string) (settings.Snapshot, error)
	History(ctx context.Context) ([]settings.Generation, error)
	Rollback(ctx context.Context, gen int, note, author string, staged settings.StagedChanges) (settings.RollbackResult, error)
}

// maxRequestBody bounds the JSON body of a request; a whole settings document is a few kilobytes.
const maxRequestBody = 1 << 20

func (s *Server) settingsRoutes() {
	m := s.mux
	m.HandleFunc("GET /api/v1/settings", s.withSettings(s.settingsList))
	m.HandleFunc("GET /api/v1/settings/{key}", s.withSettings(s.settingsGet))
	m.HandleFunc("PUT /api/v1/settings/{key}", s.withSettings(s.settingsSet))
	m.HandleFunc("DELETE /api/v1/settings/{key}", s.withSettings(s.settingsUnset))
	m.HandleFunc("GET /api/v1/config/diff", s.withSettings(s.configDiff))
	m.HandleFunc("POST /api/v1/config/commit", s.withSettings(s.configCommit))
	m.HandleFunc("POST /api/v1/config/discard", s.withSettings(s.configDiscard))
	m.HandleFunc("GET /api/v1/config/history", s.withSettings(s.configHistory))
	m.HandleFunc("POST /api/v1/config/rollback", s.withSettings(s.configRollback))
	m.HandleFunc("POST /api/v1/config/apply", s.withSettings(s.configApply))
}

// withSettings answers 501 when the node was built without a settings store.
func (s *Server) withSettings(h func(http.ResponseWriter, *http.Request, SettingsAPI)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.opts.Settings == nil {
			writeError(w, http.StatusNotImplemented, "settings are not available on this node")
			return
		}
		h(w, r, s.opts.Settings)
	}
}

// readBody decodes the JSON body of r into v; an empty body is an empty object, so that the handler names
// what is missing. Unknown members are errors, so that a misspelt "note" is not silently dropped.
func readBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("request body: %w", err)
	}
	if dec.More() {
		return errors.New("request body: more than one JSON value")
	}
	return nil
}

// settingKey returns the {key} path value in canonical form (domain rules in A-labels), or an error
// wrapping settings.ErrUnknownKey or address.ErrSyntax.
func settingKey(r *http.Request) (string, error) {
	key := r.PathValue("key")
	if strings.HasPrefix(key, settings.DomainPrefix) {
		// Any valid level canonicalises the key; only the key is wanted here.
		ck, _, err := settings.Canonical(key, "none")
		return ck, err
	}
	if _, ok := defOf(key); !ok {
		_, _, err := settings.Canonical(key, "")
		return "", err
	}
	return key, nil
}

// defOf returns the definition of a key known to settings.Defs; per-domain rules have none.
func defOf(key string) (settings.Def, bool) {
	for _, d := range settings.Defs() {
		if d.Key == key {
			return d, true
		}
	}
	return settings.Def{}, false
}

func (s *Server) settingsList(w http.ResponseWriter, r *http.Request, st SettingsAPI) {
	list, err := st.List(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]Setting, 0, len(list))
	for _, e := range list {
		out = append(out, settingDTO(e))
	}
	writeJSON(w, http.StatusOK, out)
}

// entry returns the listed entry of key; a per-domain rule that is neither committed nor staged is
// described as unset.
func entry(ctx context.Context, st SettingsAPI, key string) (Setting, error) {
	list, err := st.List(ctx)
	if err != nil {
		return Setting{}, err
	}
	for _, e := range list {
		if e.Key == key {
			return settingDTO(e), nil
		}
	}
	return Setting{Key: key, Kind: string(settings.TLSLevel), Help: "TLS rule for one destination domain."}, nil
}

func (s *Server) settingsGet(w http.ResponseWriter, r *http.Request, st SettingsAPI) {
	key, err := settingKey(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	e, err := entry(r.Context(), st, key)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

// SetRequest is the body of PUT /api/v1/settings/{key}.
type SetRequest struct {
	Value *string `json:"value"`
}

func (s *Server) settingsSet(w http.ResponseWriter, r *http.Request, st SettingsAPI) {
	key, err := settingKey(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var req SetRequest
	if err := readBody(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Value == nil {
		writeError(w, http.StatusBadRequest, `request body: "value" is required (to remove a setting, DELETE it)`)
		return
	}
	if err := st.Set(r.Context(), key, *req.Value); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("admin: setting staged", "key", key, "value", *req.Value, "ip", remoteIP(r))
	e, err := entry(r.Context(), st, key)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (s *Server) settingsUnset(w http.ResponseWriter, r *http.Request, st SettingsAPI) {
	key, err := settingKey(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := st.Unset(r.Context(), key); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("admin: setting unset staged", "key", key, "ip", remoteIP(r))
	e, err := entry(r.Context(), st, key)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

// diff answers the staged changes against the committed generation.
func diff(ctx context.Context, st SettingsAPI) (ConfigDiff, error) {
	gen := st.Current().Generation
	changes, err := st.Diff(ctx)
	if err != nil {
		return ConfigDiff{}, err
	}
	out := ConfigDiff{Generation: gen, Changes: make([]SettingChange, 0, len(changes))}
	for _, c := range changes {
		out.Changes = append(out.Changes, changeDTO(c))
	}
	return out, nil
}

func (s *Server) configDiff(w http.ResponseWriter, r *http.Request, st SettingsAPI) {
	d, err := diff(r.Context(), st)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// CommitRequest is the body of POST /api/v1/config/commit. Note is required.
type CommitRequest struct {
	Note string `json:"note"`
	// Author defaults to "admin API from <client IP>". It applies to the admin token only: a request sent
	// with a console session is attributed to its account.
	Author string `json:"author,omitempty"`
}

// author returns the request's author: the console account that sent it; for the admin token, the author
// the request names, or a description of the client when it gave none.
func author(r *http.Request, given string) string {
	if p := PrincipalOf(r); !p.Token() {
		return p.Account
	}
	if a := strings.TrimSpace(given); a != "" {
		return a
	}
	return "admin API from " + remoteIP(r)
}

func (s *Server) configCommit(w http.ResponseWriter, r *http.Request, st SettingsAPI) {
	var req CommitRequest
	if err := readBody(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	note := strings.TrimSpace(req.Note)
	if note == "" {
		writeError(w, http.StatusBadRequest, `request body: "note" is required: say why the configuration changes`)
		return
	}
	if strings.ContainsAny(note, "\r\n") {
		writeError(w, http.StatusBadRequest, `request body: "note" must be one line`)
		return
	}
	who := author(r, req.Author)
	snap, err := st.Commit(r.Context(), note, who)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("admin: settings committed", "generation", snap.Generation, "author", who, "ip", remoteIP(r))
	writeJSON(w, http.StatusOK, commitDTO(snap))
}

func (s *Server) configDiscard(w http.ResponseWriter, r *http.Request, st SettingsAPI) {
	d, err := diff(r.Context(), st)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := st.Discard(r.Context()); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("admin: staged settings discarded", "changes", len(d.Changes), "ip", remoteIP(r))
	// The answer lists what was dropped.
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) configHistory(w http.ResponseWriter, r *http.Request, st SettingsAPI) {
	hist, err := st.History(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]Generation, 0, len(hist))
	for _, g := range hist {
		out = append(out, generationDTO(g))
	}
	writeJSON(w, http.StatusOK, out)
}

// RollbackRequest is the body of POST /api/v1/config/rollback.
type RollbackRequest struct {
	Generation int `json:"generation"`
	// Note defaults to "rollback to generation N".
	Note   string `json:"note,omitempty"`
	Author string `json:"author,omitempty"`
	// DiscardStaged drops the staged changes with the rollback; without it a rollback is refused (409)
	// while changes are staged.
	DiscardStaged bool `json:"discard_staged,omitempty"`
}

func (s *Server) configRollback(w http.ResponseWriter, r *http.Request, st SettingsAPI) {
	var req RollbackRequest
	if err := readBody(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Generation < 1 {
		writeError(w, http.StatusBadRequest, `request body: "generation" must be a generation number (1 or more)`)
		return
	}
	if strings.ContainsAny(req.Note, "\r\n") {
		writeError(w, http.StatusBadRequest, `request body: "note" must be one line`)
		return
	}
	who := author(r, req.Author)
	staged := settings.RefuseStaged
	if req.DiscardStaged {
		staged = settings.DiscardStaged
	}
	res, err := st.Rollback(r.Context(), req.Generation, strings.TrimSpace(req.Note), who, staged)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := commitDTO(res.Snapshot)
	out.RollbackOf = req.Generation
	out.InForce = res.InForce
	for _, c := range res.Discarded {
		out.Discarded = append(out.Discarded, changeDTO(c))
	}
	if res.InForce {
		s.log.Info("admin: rollback to the settings in force: nothing committed", "to", req.Generation, "generation", res.Generation, "discarded", len(res.Discarded), "ip", remoteIP(r))
	} else {
		s.log.Info("admin: settings rolled back", "to", req.Generation, "generation", res.Generation, "discarded", len(res.Discarded), "author", who, "ip", remoteIP(r))
	}
	writeJSON(w, http.StatusOK, out)
}

// ApplyRequest is the body of POST /api/v1/config/apply: the whole settings document. Every key in Settings
// is staged, and every committed key missing from it is staged for removal. Values are JSON strings,
// booleans or integers.
type ApplyRequest struct {
	Settings map[string]json.RawMessage `json:"settings"`
}

// settingValue turns one JSON value of an applied document into the setting's text form.
func settingValue(key string, raw json.RawMessage) (string, error) {
	var v any
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("%s: %w: %w", key, settings.ErrInvalidValue, err)
	}
	switch t := v.(type) {
	case string:
		return t, nil
	case bool:
		return strconv.FormatBool(t), nil
	case json.Number:
		if _, err := strconv.ParseInt(t.String(), 10, 64); err != nil {
			return "", fmt.Errorf("%s: %w: %s is not an integer", key, settings.ErrInvalidValue, t)
		}
		return t.String(), nil
	default:
		return "", fmt.Errorf("%s: %w: want a string, a boolean or an integer, not %s", key, settings.ErrInvalidValue, raw)
	}
}

func (s *Server) configApply(w http.ResponseWriter, r *http.Request, st SettingsAPI) {
	var req ApplyRequest
	if err := readBody(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Settings == nil {
		writeError(w, http.StatusBadRequest, `request body: "settings" is required (an empty object removes every setting)`)
		return
	}
	// Check every key here, in order, so that all errors come back at once and in a stable order.
	vals := make(map[string]string, len(req.Settings))
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(req.Settings)) {
		v, err := settingValue(k, req.Settings[k])
		if err == nil {
			_, _, err = settings.Canonical(k, v)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		vals[k] = v
	}
	if err := errors.Join(errs...); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := st.Apply(r.Context(), vals); err != nil {
		s.fail(w, r, err)
		return
	}
	d, err := diff(r.Context(), st)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("admin: settings document staged", "keys", len(vals), "changes", len(d.Changes), "ip", remoteIP(r))
	writeJSON(w, http.StatusOK, d)
}

// The settings store satisfies the interface.
var _ SettingsAPI = (*settings.Store)(nil)
