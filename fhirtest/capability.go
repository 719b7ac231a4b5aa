package fhirtest

import "encoding/json"

type capStatement struct {
	ResourceType   string       `json:"resourceType"`
	Status         string       `json:"status"`
	Date           string       `json:"date"`
	Publisher      string       `json:"publisher"`
	Kind           string       `json:"kind"`
	Instantiates   []string     `json:"instantiates,omitempty"`
	Software       capSoftware  `json:"software"`
	Implementation capImplement `json:"implementation"`
	FHIRVersion    string       `json:"fhirVersion"`
	Format         []string     `json:"format"`
	Rest           []capRest    `json:"rest"`
}

type capSoftware struct {
	Name string `json:"name"`
}

type capImplement struct {
	Description string `json:"description"`
	URL         string `json:"url,omitempty"`
}

type capRest struct {
	Mode          string           `json:"mode"`
	Documentation string           `json:"documentation"`
	Resource      []capResource    `json:"resource"`
	Interaction   []capInteraction `json:"interaction"`
	Operation     []capOperation   `json:"operation,omitempty"`
}

// capOperation declares an operation by its OperationDefinition.
type capOperation struct {
	Name       string `json:"name"`
	Definition string `json:"definition"`
}

type capInteraction struct {
	Code string `json:"code"`
}

type capResource struct {
	Type              string           `json:"type"`
	Interaction       []capInteraction `json:"interaction"`
	Versioning        string           `json:"versioning"`
	ReadHistory       bool             `json:"readHistory"`
	UpdateCreate      bool             `json:"updateCreate"`
	ConditionalCreate bool             `json:"conditionalCreate"`
	ConditionalRead   string           `json:"conditionalRead"`
	ConditionalUpdate bool             `json:"conditionalUpdate"`
	ConditionalDelete string           `json:"conditionalDelete"`
	ReferencePolicy   []string         `json:"referencePolicy"`
	SearchParam       []capSearchParam `json:"searchParam"`
	Operation         []capOperation   `json:"operation,omitempty"`
}

type capSearchParam struct {
	Name          string `json:"name"`
	Type          string `json:"type"`
	Documentation string `json:"documentation,omitempty"`
}

// capabilityStatement returns the CapabilityStatement: every R4 resource
// type with the interactions and search parameters this server supports,
// and whether update-as-create and referential integrity are on.
func (s *Server) capabilityStatement(base string) []byte {
	s.capMu.Lock()
	defer s.capMu.Unlock()
	if s.capDate == "" {
		s.capDate = s.now().UTC().Format("2006-01-02")
	}
	if b, ok := s.capByBase[base]; ok {
		return b
	}
	interactions := []capInteraction{
		{"read"}, {"vread"}, {"update"}, {"delete"}, {"history-instance"}, {"create"}, {"search-type"},
	}
	policy := []string{"literal", "local"}
	if s.cfg.integrity {
		policy = append(policy, "enforced")
	}
	rest := capRest{
		Mode: "server",
		Documentation: "In-memory FHIR R4 test server (ketamine-fhir fhirtest). JSON only. " +
			"Search results are in creation order; paging uses _count and _offset. " +
			"Unknown search parameters are ignored (and left out of the self link) unless Prefer: handling=strict. " +
			"Bulk Data $export (IG v2) at system, Patient and Group level, GET kick-off only, with _outputFormat " +
			"(NDJSON), _type, _since and _typeFilter; Patient and Group exports hold Patients and the resources of " +
			"Patient-compartment types that reference them; files are split by line count when configured.",
		Interaction: []capInteraction{{"transaction"}, {"batch"}},
		Operation:   []capOperation{{Name: "export", Definition: exportOpSystem}},
	}
	for _, typ := range resourceTypes {
		r := capResource{
			Type:              typ,
			Interaction:       interactions,
			Versioning:        "versioned-update",
			ReadHistory:       true,
			UpdateCreate:      s.cfg.updateCreate,
			ConditionalCreate: true,
			ConditionalRead:   "not-match",
			ConditionalUpdate: true,
			ConditionalDelete: "single",
			ReferencePolicy:   policy,
		}
		switch typ {
		case "Patient":
			r.Operation = []capOperation{{Name: "export", Definition: exportOpPatient}}
		case "Group":
			r.Operation = []capOperation{{Name: "export", Definition: exportOpGroup}}
		}
		for _, p := range sortedParams(typ) {
			r.SearchParam = append(r.SearchParam, capSearchParam{Name: p.name, Type: p.kind.String(), Documentation: p.doc})
		}
		rest.Resource = append(rest.Resource, r)
	}
	cs := capStatement{
		ResourceType:   "CapabilityStatement",
		Status:         "active",
		Date:           s.capDate,
		Publisher:      "ketamine-fhir",
		Kind:           "instance",
		Instantiates:   []string{bulkDataCapStmt},
		Software:       capSoftware{Name: "ketamine-fhir fhirtest"},
		Implementation: capImplement{Description: "in-memory FHIR R4 test server with fault injection", URL: base},
		FHIRVersion:    "4.0.1",
		Format:         []string{"application/fhir+json", "json"},
		Rest:           []capRest{rest},
	}
	b, err := json.Marshal(cs)
	if err != nil {
		panic("fhirtest: marshal CapabilityStatement: " + err.Error())
	}
	if s.capByBase == nil || len(s.capByBase) > 16 {
		s.capByBase = map[string][]byte{}
	}
	s.capByBase[base] = b
	return b
}
