package mapping

import "testing"

func TestValidNPI(t *testing.T) {
	cases := map[string]bool{
		"1234567893":  true, // the CMS example NPI
		"1987654328":  true,
		"1456789019":  true,
		"1234567890":  false, // wrong check digit
		"1234567894":  false,
		"123456789":   false,
		"12345678931": false,
		"12345678a3":  false,
		"":            false,
		"１234567893":  false, // full-width digit
	}
	for npi, want := range cases {
		if got := ValidNPI(npi); got != want {
			t.Errorf("ValidNPI(%q) = %v, want %v", npi, got, want)
		}
	}
	// Every single-digit change of a valid NPI is caught by the check digit.
	base := []byte("1234567893")
	for i := range base {
		for d := byte('0'); d <= '9'; d++ {
			if d == base[i] {
				continue
			}
			b := append([]byte(nil), base...)
			b[i] = d
			if ValidNPI(string(b)) {
				t.Errorf("ValidNPI(%s) = true after changing digit %d", b, i)
			}
		}
	}
}

func TestQIDSTotal(t *testing.T) {
	cases := []struct {
		items []int
		want  int
	}{
		{[]int{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0},
		{[]int{3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3}, 27},
		// Sleep 1-4: max 2; item 5: 1; appetite/weight 6-9: max 3; 10-14: 5; psychomotor 15-16: max 2.
		{[]int{1, 2, 0, 1, 1, 0, 3, 1, 2, 1, 1, 1, 1, 1, 2, 1}, 2 + 1 + 3 + 5 + 2},
		// Only the last item of each maximum group set.
		{[]int{0, 0, 0, 3, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 3}, 9},
		// Items 5 and 10-14 are added one by one.
		{[]int{0, 0, 0, 0, 3, 0, 0, 0, 0, 3, 3, 3, 3, 3, 0, 0}, 18},
	}
	for _, tc := range cases {
		if got := qidsTotal(tc.items); got != tc.want {
			t.Errorf("qidsTotal(%v) = %d, want %d", tc.items, got, tc.want)
		}
	}
}

func TestValidICD10CM(t *testing.T) {
	cases := map[string]bool{
		"F32":       true,
		"F32.A":     true,
		"F33.1":     true,
		"M1A.071":   true,
		"S72.001A":  true,
		"F33.":      false,
		"F331":      false,
		"f33.1":     false,
		"F3.1":      false,
		"3F3.1":     false,
		"F33.12345": false,
		"F33-1":     false,
		"":          false,
	}
	for code, want := range cases {
		if got := validICD10CM(code); got != want {
			t.Errorf("validICD10CM(%q) = %v, want %v", code, got, want)
		}
	}
}

func TestValidFrequency(t *testing.T) {
	cases := map[string]bool{
		"1/day": true, "2/week": true, "12/month": true, "999/day": true,
		"0/week": false, "02/week": false, "1000/day": false, "2/wk": false,
		"2 / week": false, "/week": false, "2week": false, "-1/day": false, "": false,
	}
	for s, want := range cases {
		if got := validFrequency(s); got != want {
			t.Errorf("validFrequency(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestValidPhoneAndEmail(t *testing.T) {
	phones := map[string]bool{
		"+1 (555) 010-2233": true, "555.010.2233": true, "5550102233 x123": true, "+44 20 7946 0958": true,
		"555-0102": true, "12345": false, "555-CALL-NOW": false, "5550102233 x": false, "+1 555 010 2233 ext 5": false,
		"123456789012345678901": false,
	}
	for s, want := range phones {
		if got := validPhone(s); got != want {
			t.Errorf("validPhone(%q) = %v, want %v", s, got, want)
		}
	}
	emails := map[string]bool{
		"a@example.org": true, "first.last+tag@sub.example.co.uk": true,
		"a@example": false, "@example.org": false, "a@@example.org": false, "a@b@example.org": false,
		"a@.example.org": false, "a@example..org": false, "a @example.org": false, "a@-x.org": false,
	}
	for s, want := range emails {
		if got := validEmail(s); got != want {
			t.Errorf("validEmail(%q) = %v, want %v", s, got, want)
		}
	}
}
