package validate

import (
	"fmt"
	"strings"
)

// isAlnum reports whether c is a lowercase letter or a digit.
func isAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// checkLabel returns why s is not a DNS-1123 label (RFC 1123: 1 to 63
// lowercase alphanumerics or '-', starting and ending alphanumeric), or "".
func checkLabel(s string) string {
	if s == "" {
		return "is required"
	}
	if len(s) > MaxLabelLen {
		return fmt.Sprintf("is longer than %d characters", MaxLabelLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && (c != '-' || i == 0 || i == len(s)-1) {
			return "is not a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit)"
		}
	}
	return ""
}

// checkDNS1035Label returns why s is not a DNS-1035 label (as a DNS-1123
// label, but starting with a letter), or "". Kubernetes Service names are
// DNS-1035 labels.
func checkDNS1035Label(s string) string {
	if r := checkLabel(s); r != "" {
		if r == "is required" || strings.HasPrefix(r, "is longer") {
			return r
		}
		return "is not a DNS-1035 label (lowercase letters, digits and '-', starting with a letter, ending with a letter or digit)"
	}
	if c := s[0]; c < 'a' || c > 'z' {
		return "is not a DNS-1035 label (lowercase letters, digits and '-', starting with a letter, ending with a letter or digit)"
	}
	return ""
}

// checkSubdomain returns why s is not a DNS-1123 subdomain (at most 253
// characters, dot-separated DNS-1123 labels), or "". Kubernetes node names
// are subdomains.
func checkSubdomain(s string) string {
	if s == "" {
		return "is required"
	}
	if len(s) > MaxNameLen {
		return fmt.Sprintf("is longer than %d characters", MaxNameLen)
	}
	for _, l := range strings.Split(s, ".") {
		if r := checkLabel(l); r != "" {
			return "is not a DNS-1123 subdomain (dot-separated DNS-1123 labels)"
		}
	}
	return ""
}

// checkQualifiedName returns why s is not a Kubernetes qualified name
// ([prefix/]name: prefix a DNS-1123 subdomain, name at most 63 characters
// [A-Za-z0-9._-] starting and ending alphanumeric), the syntax of
// appProtocol, or "".
func checkQualifiedName(s string) string {
	const bad = "is not a qualified name ([dns-subdomain/]name, name alphanumerics, '-', '_' and '.', starting and ending alphanumeric)"
	if len(s) > MaxAppProtocolLen {
		return fmt.Sprintf("is longer than %d characters", MaxAppProtocolLen)
	}
	name := s
	if i := strings.IndexByte(s, '/'); i >= 0 {
		if checkSubdomain(s[:i]) != "" {
			return bad
		}
		name = s[i+1:]
	}
	if name == "" || len(name) > MaxLabelLen {
		return bad
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || i == len(name)-1 || c != '-' && c != '_' && c != '.') {
			return bad
		}
	}
	return ""
}

// ClusterID checks a cluster id on its own (a DNS-1123 label), for callers
// that take an id outside a record (token binding, admin requests).
func ClusterID(id string) error {
	if r := checkLabel(id); r != "" {
		return Errors{{Field: "cluster_id", Value: truncate(id), Reason: r}}
	}
	return nil
}
