package mapping

import (
	"crypto/sha1"
	"encoding/hex"
	"net/url"
	"strconv"
	"strings"
)

// Identifier is a FHIR business identifier. Its Value may hold a patient's
// MRN: do not log it.
type Identifier struct {
	System, Value string
}

// Token returns the identifier as a FHIR search token "system|value", with
// the FHIR search escaping (`\\`, `\|`, `\,`, `\$`) of each part. An empty
// System gives "|value", which FHIR reads as "value without a system".
func (id Identifier) Token() string {
	return escapeSearch(id.System) + "|" + escapeSearch(id.Value)
}

// Query returns the search query that matches the identifier:
// "identifier=" followed by the URL-encoded Token.
func (id Identifier) Query() string {
	return "identifier=" + url.QueryEscape(id.Token())
}

// searchEscaper escapes the characters FHIR search gives a meaning to
// (https://hl7.org/fhir/R4/search.html#escaping). The backslash comes first
// so that escapes are not escaped again; strings.Replacer replaces in one
// pass anyway.
var searchEscaper = strings.NewReplacer(`\`, `\\`, `|`, `\|`, `,`, `\,`, `$`, `\$`)

func escapeSearch(s string) string {
	if !strings.ContainsAny(s, `\|,$`) {
		return s
	}
	return searchEscaper.Replace(s)
}

// Identifier returns the primary business identifier of the resource built
// from record (kind, id): {Base + "/" + kind, id}.
func (m *Mapper) Identifier(kind Kind, id string) Identifier {
	var sys string
	switch kind {
	case KindPatient:
		sys = m.sys.patient
	case KindOrder:
		sys = m.sys.order
	case KindAdministration:
		sys = m.sys.administration
	case KindScore:
		sys = m.sys.score
	default:
		sys = m.cfg.Identifiers.Base + "/" + string(kind)
	}
	return Identifier{System: sys, Value: id}
}

// Derived identifiers: the Observations built from an administration are
// identified by the administration's id plus a stable suffix, in the system
// Base + "/administration-observation".

// vitalIdentifier identifies measure ("bp", "hr", "spo2") of the 0-based
// vitals entry i of an administration: "<admin_id>/vitals/<i+1>/<measure>".
func (m *Mapper) vitalIdentifier(adminID string, i int, measure string) Identifier {
	return Identifier{System: m.sys.adminObservation, Value: adminID + "/vitals/" + strconv.Itoa(i+1) + "/" + measure}
}

// weightIdentifier identifies the body weight of an administration:
// "<admin_id>/weight".
func (m *Mapper) weightIdentifier(adminID string) Identifier {
	return Identifier{System: m.sys.adminObservation, Value: adminID + "/weight"}
}

// adverseEventIdentifier identifies one adverse event of an administration:
// "<admin_id>/adverse-event/<code>".
func (m *Mapper) adverseEventIdentifier(adminID, code string) Identifier {
	return Identifier{System: m.sys.adminObservation, Value: adminID + "/adverse-event/" + code}
}

// urlNamespace is the RFC 4122 name space ID for URLs
// (6ba7b811-9dad-11d1-80b4-00c04fd430c8).
var urlNamespace = [16]byte{0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}

// uuidV5 returns the RFC 4122 name-based (SHA-1, version 5) UUID of name in
// namespace ns, in its canonical text form.
func uuidV5(ns [16]byte, name string) string {
	h := sha1.New()
	h.Write(ns[:])
	h.Write([]byte(name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	var buf [36]byte
	hex.Encode(buf[0:8], u[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], u[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], u[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], u[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:], u[10:])
	return string(buf[:])
}
