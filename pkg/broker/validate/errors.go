package validate

import (
	"errors"
	"fmt"
	"strings"
)

// FieldError is one problem with one field of a record.
type FieldError struct {
	// Field is the path of the field in the record, with proto field names
	// and indexes: "subnets[2]", "ports[0].port", "endpoints[3].ips[1]".
	// Empty for a problem with the record as a whole.
	Field string
	// Value is the offending value as text, truncated to MaxValueLen bytes;
	// empty when the value is missing or not meaningful as text.
	Value string
	// Reason says what is wrong, e.g. "is not canonical (want 10.0.0.0/16)".
	Reason string
	// Conflict is the id of the other cluster the value conflicts with
	// (overlapping CIDRs); empty when the problem is local to the record.
	Conflict string
}

// Error implements error:
//
//	pod_cidrs[1]: "10.0.0.1/16" is not canonical (want 10.0.0.0/16)
//	pod_cidrs[0]: "10.0.0.0/16" overlaps service_cidrs[0] 10.0.0.0/8 of cluster "east"
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	if e.Value != "" {
		fmt.Fprintf(&b, "%q ", e.Value)
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Errors is every problem found in one record, in field order. Validation
// functions return either nil or a non-empty Errors (as error); at most
// MaxErrors are collected.
type Errors []*FieldError

// Error joins the field errors with "; ".
func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

// Unwrap returns the field errors, for errors.As / errors.Is.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// WithPrefix returns a copy of es whose field paths are relative to an
// enclosing message: WithPrefix("cluster") turns "pod_cidrs[0]" into
// "cluster.pod_cidrs[0]" (and "" into "cluster").
func (es Errors) WithPrefix(prefix string) Errors {
	out := make(Errors, len(es))
	for i, e := range es {
		c := *e
		if c.Field == "" {
			c.Field = prefix
		} else {
			c.Field = prefix + "." + c.Field
		}
		out[i] = &c
	}
	return out
}

// AsErrors extracts the field errors from err (an Errors, a *FieldError, or
// something wrapping either).
func AsErrors(err error) (Errors, bool) {
	var es Errors
	if errors.As(err, &es) {
		return es, true
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return Errors{fe}, true
	}
	return nil, false
}

// collector accumulates field errors for one record, up to MaxErrors.
type collector struct {
	errs Errors
}

// full reports whether no more errors are collected; validation of long
// lists stops early then.
func (c *collector) full() bool { return len(c.errs) >= MaxErrors }

// add records a problem with field.
func (c *collector) add(field, value, reason string) {
	c.addConflict(field, value, reason, "")
}

// addf is add with a formatted reason.
func (c *collector) addf(field, value, format string, args ...any) {
	c.add(field, value, fmt.Sprintf(format, args...))
}

// addConflict records a problem with field caused by cluster conflict.
func (c *collector) addConflict(field, value, reason, conflict string) {
	if c.full() {
		return
	}
	c.errs = append(c.errs, &FieldError{Field: field, Value: truncate(value), Reason: reason, Conflict: conflict})
}

// err returns the collected errors as an error, or nil.
func (c *collector) err() error {
	if len(c.errs) == 0 {
		return nil
	}
	return c.errs
}

// truncate shortens untrusted text for error messages to MaxValueLen bytes
// (on a UTF-8 boundary when the text is valid UTF-8).
func truncate(s string) string {
	if len(s) <= MaxValueLen {
		return s
	}
	cut := MaxValueLen
	for cut > MaxValueLen-4 && cut > 0 && s[cut]&0xc0 == 0x80 {
		cut--
	}
	return s[:cut] + "..."
}
