package config

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// iniSection is one [section] of an INI file, keys lower-cased.
type iniSection struct {
	name string
	line int
	keys map[string]iniValue
}

type iniValue struct {
	value string
	line  int
}

// literalKeys hold secrets: their values are taken verbatim, so a password
// may contain ';', '#' or '%' (the original crashed on '%' and cut passwords
// at ';' only by accident of configparser's defaults).
var literalKeys = map[string]bool{"pass": true, "password": true}

// parseINI reads the subset of Python configparser syntax the original
// service's connections.ini files use: [sections], "key = value" or
// "key: value", case-insensitive keys, full-line comments starting with '#'
// or ';', a DEFAULT section whose keys every section inherits, and no
// interpolation ('%' is literal). Inline comments (" ;" or " #" after a
// value) are stripped except in secret keys. Duplicate sections or keys and
// multi-line values are errors, as they are in configparser's strict mode,
// because a silently chosen winner is how credentials go wrong.
func parseINI(data []byte) ([]*iniSection, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var (
		sections  []*iniSection
		byName    = map[string]*iniSection{}
		cur       *iniSection
		keyIndent = -1
		lastKey   string
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for lineNo := 1; sc.Scan(); lineNo++ {
		raw := strings.TrimRight(sc.Text(), "\r")
		trimmed := strings.TrimSpace(raw)
		if trimmed == "" || trimmed[0] == '#' || trimmed[0] == ';' {
			continue
		}
		indent := len(raw) - len(strings.TrimLeft(raw, " \t"))
		if lastKey != "" && indent > keyIndent {
			return nil, fmt.Errorf("line %d: indented line continues key %q; multi-line values are not supported", lineNo, lastKey)
		}
		if trimmed[0] == '[' {
			end := strings.IndexByte(trimmed, ']')
			if end < 0 {
				return nil, fmt.Errorf("line %d: section header %q has no closing ']'", lineNo, trimmed)
			}
			name := strings.TrimSpace(trimmed[1:end])
			if name == "" {
				return nil, fmt.Errorf("line %d: empty section name", lineNo)
			}
			if rest := strings.TrimSpace(trimmed[end+1:]); rest != "" && rest[0] != '#' && rest[0] != ';' {
				return nil, fmt.Errorf("line %d: unexpected text %q after section header", lineNo, rest)
			}
			if prev, dup := byName[name]; dup {
				return nil, fmt.Errorf("line %d: section [%s] already defined on line %d", lineNo, name, prev.line)
			}
			cur = &iniSection{name: name, line: lineNo, keys: map[string]iniValue{}}
			byName[name] = cur
			sections = append(sections, cur)
			lastKey, keyIndent = "", -1
			continue
		}
		if cur == nil {
			return nil, fmt.Errorf("line %d: key outside of any [section]", lineNo)
		}
		sep := strings.IndexAny(trimmed, "=:")
		if sep <= 0 {
			return nil, fmt.Errorf("line %d: expected \"key = value\", got %q", lineNo, trimmed)
		}
		key := strings.ToLower(strings.TrimSpace(trimmed[:sep]))
		value := strings.TrimLeft(trimmed[sep+1:], " \t")
		if !literalKeys[key] {
			value = stripInlineComment(value)
		}
		if prev, dup := cur.keys[key]; dup {
			return nil, fmt.Errorf("line %d: key %q in [%s] already set on line %d", lineNo, key, cur.name, prev.line)
		}
		cur.keys[key] = iniValue{value: value, line: lineNo}
		lastKey, keyIndent = key, indent
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return sections, nil
}

// stripInlineComment removes a trailing comment that starts with ';' or '#'
// preceded by whitespace, as configparser does with inline_comment_prefixes.
func stripInlineComment(v string) string {
	for i := 1; i < len(v); i++ {
		if (v[i] == ';' || v[i] == '#') && (v[i-1] == ' ' || v[i-1] == '\t') {
			return strings.TrimRight(v[:i], " \t")
		}
	}
	if v != "" && (v[0] == ';' || v[0] == '#') {
		return ""
	}
	return strings.TrimRight(v, " \t")
}
