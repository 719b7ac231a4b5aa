package mapping

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// mappingVersion changes whenever the builders change what they produce
// for the same record and config, so that a new release re-compares what
// the EHR holds.
const mappingVersion = "1"

// Fingerprint identifies what this Mapper produces: a hash of its
// configuration (identifier systems, formulary, code lists, limits, time
// zone; json.Marshal sorts map keys) and of the builders' version. Two
// Mappers with the same Fingerprint map every record to the same FHIR.
func (m *Mapper) Fingerprint() string {
	b, err := json.Marshal(m.cfg)
	if err != nil {
		// Config holds only strings, numbers, lists and maps: it marshals.
		b = []byte(err.Error())
	}
	h := sha256.New()
	h.Write([]byte(mappingVersion))
	h.Write([]byte{0})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}
