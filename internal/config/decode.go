package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/mxgate/mxgate/internal/settings"
)

// The document is decoded one value at a time. BurntSushi/toml stops at the first type error, and it walks a
// table in map order, so decoding a whole table at once would report one error, a different one on each run.
// Instead each table is first decoded into a struct of toml.Primitive built from the schema (this marks the
// known keys, so that MetaData.Undecoded still lists the unknown ones), and then every present key is decoded
// into its field in schema order. A value that fails to decode is reported, its field keeps its default, and
// its key path is recorded in failedSet so that validation does not report noise about it.

// failedSet holds the key paths ("queue.concurrency", "route[1].domains") whose values failed to decode.
type failedSet map[string]bool

type decoder struct {
	data     []byte
	md       *toml.MetaData
	errs     *[]error
	failed   failedSet
	reported []toml.Key // keys already reported as unknown; keys below them are not reported again
}

func (d *decoder) errorf(format string, args ...any) {
	*d.errs = append(*d.errs, fmt.Errorf(format, args...))
}

// decode fills c from data. It returns nil after a syntax error, which leaves nothing else to check.
func decode(data []byte, c *Config, errs *[]error) failedSet {
	var top toml.Primitive
	md, err := toml.Decode(string(data), &top)
	if err != nil {
		*errs = append(*errs, syntaxError(err))
		return nil
	}
	d := &decoder{data: data, md: &md, errs: errs, failed: failedSet{}}
	d.table(top, "", reflect.ValueOf(c).Elem())
	d.unknownKeys()
	// A host name set in the file beats the OS host name for the other one too: both name the gateway, and
	// the default addresses (postmaster@, the TLS report contact) are built from them.
	smtpSet, deliverySet := md.IsDefined("smtp", "hostname"), md.IsDefined("delivery", "hostname")
	switch {
	case smtpSet && !deliverySet:
		c.Delivery.Hostname = c.SMTP.Hostname
	case deliverySet && !smtpSet:
		c.SMTP.Hostname = c.Delivery.Hostname
	}
	return d.failed
}

func syntaxError(err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("line %d, column %d: %s", pe.Position.Line, pe.Position.Col, pe.Message)
	}
	return err
}

// keyPath appends a key to a printable path, quoting it as TOML would.
func keyPath(path, name string) string {
	if path == "" {
		return toml.Key{name}.String()
	}
	return path + "." + toml.Key{name}.String()
}

// table decodes the table in p, at printable path (such as "smtp" or "route[1]"), into dst, a struct that
// holds the defaults.
func (d *decoder) table(p toml.Primitive, path string, dst reflect.Value) {
	t := dst.Type()
	fields := make([]reflect.StructField, t.NumField())
	for i := range fields {
		f := t.Field(i)
		fields[i] = reflect.StructField{Name: f.Name, Type: reflect.TypeFor[toml.Primitive](), Tag: f.Tag}
	}
	holder := reflect.New(reflect.StructOf(fields))
	if err := d.md.PrimitiveDecode(p, holder.Interface()); err != nil {
		d.failed[path] = true
		d.errorf("%s: %s", path, decodeMessage(err))
		return
	}
	for i := range fields {
		fp := holder.Elem().Field(i)
		if fp.IsZero() { // key absent: keep the default
			continue
		}
		prim := fp.Interface().(toml.Primitive)
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		key := keyPath(path, name)
		field := dst.Field(i)
		switch {
		case field.Kind() == reflect.Struct:
			d.table(prim, key, field)
		case field.Kind() == reflect.Slice && field.Type().Elem().Kind() == reflect.Struct:
			d.array(prim, key, field)
		case key == "settings":
			d.settings(prim, key, field)
		case field.Kind() == reflect.Map:
			d.mapping(prim, key, field)
		default:
			d.value(prim, key, field)
		}
	}
}

// value decodes one value; on failure the field keeps its default.
func (d *decoder) value(p toml.Primitive, key string, dst reflect.Value) bool {
	saved := reflect.New(dst.Type()).Elem()
	saved.Set(dst)
	if err := d.md.PrimitiveDecode(p, dst.Addr().Interface()); err != nil {
		dst.Set(saved)
		d.failed[key] = true
		d.errorf("%s: %s", key, decodeMessage(err))
		return false
	}
	return true
}

// array decodes an array of tables, each element over its type's defaults.
func (d *decoder) array(p toml.Primitive, key string, dst reflect.Value) {
	var prims []toml.Primitive
	if err := d.md.PrimitiveDecode(p, &prims); err != nil {
		d.failed[key] = true
		d.errorf("%s: must be an array of tables ([[%s]]), got %s", key, key, mdTypeName(d.md.Type(key)))
		return
	}
	out := reflect.MakeSlice(dst.Type(), len(prims), len(prims))
	for i, ep := range prims {
		if e, ok := out.Index(i).Addr().Interface().(interface{ setDefaults() }); ok {
			e.setDefaults()
		}
		d.table(ep, fmt.Sprintf("%s[%d]", key, i), out.Index(i))
	}
	dst.Set(out)
}

// settings decodes the [settings] table with settings.FromTOML, the code `mxgate config apply` uses, over
// the defaults in dst. Each key's error is reported under its path.
func (d *decoder) settings(p toml.Primitive, key string, dst reflect.Value) {
	var tbl map[string]any
	if err := d.md.PrimitiveDecode(p, &tbl); err != nil {
		d.failed[key] = true
		d.errorf("%s: %s", key, decodeMessage(err))
		return
	}
	vals, err := settings.FromTOML(tbl)
	if err != nil {
		d.failed[key] = true
		errs := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		}
		for _, e := range errs {
			d.errorf("%s: %s", key, e)
		}
	}
	if dst.IsNil() {
		dst.Set(reflect.MakeMap(dst.Type()))
	}
	for k, v := range vals {
		dst.SetMapIndex(reflect.ValueOf(k), reflect.ValueOf(v))
	}
}

// mapping decodes a table with free-form keys ([smtp.users], [settings]) over the defaults in dst, one key
// at a time in sorted order.
func (d *decoder) mapping(p toml.Primitive, key string, dst reflect.Value) {
	var prims map[string]toml.Primitive
	if err := d.md.PrimitiveDecode(p, &prims); err != nil {
		d.failed[key] = true
		d.errorf("%s: %s", key, decodeMessage(err))
		return
	}
	if dst.IsNil() {
		dst.Set(reflect.MakeMap(dst.Type()))
	}
	names := make([]string, 0, len(prims))
	for k := range prims {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, name := range names {
		k := keyPath(key, name)
		v := reflect.New(dst.Type().Elem()).Elem()
		if d.value(prims[name], k, v) {
			dst.SetMapIndex(reflect.ValueOf(name), v)
		}
	}
}

// decodeMessage returns the message of a BurntSushi/toml decode error without its position and key prefix
// (the caller prints the key path), with type mismatches named in TOML terms.
func decodeMessage(err error) string {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return friendlyTypeMessage(pe.Message)
	}
	// Type errors are plain errors: `toml: line 3 (last key "smtp.x"): incompatible types: ...`.
	msg := strings.TrimPrefix(err.Error(), "toml: ")
	if i := strings.Index(msg, `(last key "`); i >= 0 {
		if j := strings.Index(msg[i:], `"): `); j >= 0 {
			msg = msg[i+j+len(`"): `):]
		}
	}
	return friendlyTypeMessage(msg)
}

// friendlyTypeMessage rewrites BurntSushi/toml's type mismatch messages (which name Go types) in TOML terms.
func friendlyTypeMessage(msg string) string {
	if rest, ok := strings.CutPrefix(msg, "incompatible types: TOML value has type "); ok {
		if got, want, ok := strings.Cut(rest, "; destination has type "); ok {
			return fmt.Sprintf("must be %s, got %s", wantName(want), goTypeName(got))
		}
	}
	if rest, ok := strings.CutPrefix(msg, "type mismatch for "); ok {
		if _, got, ok := strings.Cut(rest, ": expected table but found "); ok {
			return "must be a table, got " + goTypeName(got)
		}
	}
	return msg
}

func wantName(dst string) string {
	switch dst {
	case "integer":
		return "an integer"
	case "float":
		return "a number"
	case "boolean":
		return "a boolean"
	case "slice":
		return "an array"
	case "map":
		return "a table"
	case "string", "primitive (string-like)":
		return "a string"
	}
	return dst
}

// goTypeName names the Go type BurntSushi/toml decodes a TOML value to by its TOML type.
func goTypeName(t string) string {
	switch t {
	case "string":
		return "string"
	case "int64":
		return "integer"
	case "float64":
		return "float"
	case "bool":
		return "boolean"
	case "[]any", "[]interface {}":
		return "array"
	case "map[string]any", "map[string]interface {}":
		return "table"
	case "[]map[string]any", "[]map[string]interface {}":
		return "array of tables"
	case "time.Time", "toml.LocalDate", "toml.LocalTime", "toml.LocalDatetime":
		return "date-time"
	}
	return t
}

// mdTypeName names a MetaData.Type result in lower case TOML terms.
func mdTypeName(t string) string {
	switch t {
	case "Hash":
		return "table"
	case "ArrayHash":
		return "array of tables"
	case "Bool":
		return "boolean"
	case "Datetime", "DatetimeLocal", "DateLocal", "TimeLocal":
		return "date-time"
	}
	return strings.ToLower(t)
}

// unknownKeys reports keys the schema does not have: keys that match a field only when case is ignored
// (BurntSushi/toml would silently accept them), then keys that MetaData.Undecoded lists. A key is reported
// once, at its top-most unknown level; keys inside tables that failed to decode are not reported.
func (d *decoder) unknownKeys() {
	under := func(k toml.Key) bool {
		for _, r := range d.reported {
			if len(k) >= len(r) && slices.Equal(k[:len(r)], r) {
				return true
			}
		}
		return false
	}
	report := func(k toml.Key, hint string) {
		d.reported = append(d.reported, k)
		for _, p := range d.arrayPaths(k) {
			d.errorf("unknown key %q%s", p, hint)
		}
	}
	for _, k := range d.md.Keys() {
		if under(k) {
			continue
		}
		if i, want := caseMismatch(k); i >= 0 {
			report(k[:i+1], fmt.Sprintf(" (keys are case-sensitive: %q)", want))
		}
	}
	for _, k := range d.md.Undecoded() {
		if under(k) || d.failed[k[0]] {
			continue
		}
		report(k, "")
	}
}

// arrayPaths returns the printable paths of key k. Undecoded keys below an array of tables carry no index, so
// the elements that hold k are looked up in a plain decode of the document.
func (d *decoder) arrayPaths(k toml.Key) []string {
	if t := d.md.Type(k[0]); len(k) < 2 || (t != "ArrayHash" && t != "Array") {
		return []string{k.String()}
	}
	var raw map[string]any
	if _, err := toml.Decode(string(d.data), &raw); err != nil {
		return []string{k.String()}
	}
	var elems []map[string]any
	switch v := raw[k[0]].(type) {
	case []map[string]any:
		elems = v
	case []any:
		for _, e := range v {
			m, _ := e.(map[string]any)
			elems = append(elems, m)
		}
	}
	var out []string
	for i, e := range elems {
		path := fmt.Sprintf("%s[%d]", k[0], i)
		if !hasKey(e, k[1:]) {
			continue
		}
		out = append(out, path+"."+k[1:].String())
	}
	return out
}

func hasKey(m map[string]any, k toml.Key) bool {
	for i, part := range k {
		v, ok := m[part]
		if !ok {
			return false
		}
		if i == len(k)-1 {
			return true
		}
		if m, ok = v.(map[string]any); !ok {
			return false
		}
	}
	return false
}

// caseMismatch walks k through the Config schema and returns the index of the first component that names a
// field only when case is ignored, with the field's real name; -1 when there is none.
func caseMismatch(k toml.Key) (int, string) {
	t := reflect.TypeFor[Config]()
	for i, part := range k {
		if t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return -1, "" // maps take any key; scalars have no children
		}
		var next reflect.Type
		for j := range t.NumField() {
			f := t.Field(j)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == part {
				next = f.Type
				break
			}
			if strings.EqualFold(name, part) {
				return i, name
			}
		}
		if next == nil {
			return -1, "" // unknown, reported from Undecoded
		}
		t = next
	}
	return -1, ""
}
