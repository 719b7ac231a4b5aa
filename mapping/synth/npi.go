package synth

// npiCheckDigit returns the check digit of an NPI whose first nine digits
// are base: the Luhn check digit computed over "80840" + base (the ISO card
// issuer prefix the NPI standard prescribes).
func npiCheckDigit(base string) byte {
	digits := "80840" + base
	sum := 0
	// The check digit will be appended on the right, so the rightmost digit
	// of digits is doubled, then every second digit going left.
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if (len(digits)-1-i)%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return byte('0' + (10-sum%10)%10)
}

// validNPI reports whether npi is ten digits with a valid check digit.
func validNPI(npi string) bool {
	if len(npi) != 10 {
		return false
	}
	for i := 0; i < len(npi); i++ {
		if npi[i] < '0' || npi[i] > '9' {
			return false
		}
	}
	return npiCheckDigit(npi[:9]) == npi[9]
}

// makeNPI appends the check digit to a nine-digit base.
func makeNPI(base string) string {
	return base + string(npiCheckDigit(base))
}
