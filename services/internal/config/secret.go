package config

import "log/slog"

// Secret holds a credential. Its String, JSON and slog forms are redacted so
// a secret cannot reach a log line, an outcome or the admin API by accident;
// Reveal is the one place that reads it.
type Secret string

const redacted = "[REDACTED]"

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) String() string { return redacted }

// GoString keeps %#v from printing the secret.
func (s Secret) GoString() string { return redacted }

// MarshalJSON keeps encoding/json from printing the secret.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// LogValue keeps log/slog from printing the secret.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }
