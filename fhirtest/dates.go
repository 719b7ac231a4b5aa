package fhirtest

import (
	"math"
	"time"
)

// dateRange is the implicit range of a FHIR date, dateTime, instant or
// Period, in Unix microseconds: lo inclusive, hi exclusive. An open end is
// math.MinInt64 or math.MaxInt64.
type dateRange struct {
	lo, hi int64
}

// contains reports whether r holds all of o.
func (r dateRange) contains(o dateRange) bool { return o.lo >= r.lo && o.hi <= r.hi }

// parseDateRange parses a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD) or dateTime
// (YYYY-MM-DDThh:mm[:ss[.fff]][Z|+hh:mm]) into the range it stands for: a
// date covers its whole year, month or day, a time covers its last given
// unit (minute, second or fraction). Values without a zone are read as UTC,
// the zone of the server.
func parseDateRange(s string) (dateRange, bool) {
	n := len(s)
	year, ok := digits(s, 0, 4)
	if !ok || year < 1 {
		return dateRange{}, false
	}
	if n == 4 {
		lo := time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC)
		return dateRange{lo.UnixMicro(), lo.AddDate(1, 0, 0).UnixMicro()}, true
	}
	if n < 7 || s[4] != '-' {
		return dateRange{}, false
	}
	month, ok := digits(s, 5, 2)
	if !ok || month < 1 || month > 12 {
		return dateRange{}, false
	}
	if n == 7 {
		lo := time.Date(year, time.Month(month), 1, 0, 0, 0, 0, time.UTC)
		return dateRange{lo.UnixMicro(), lo.AddDate(0, 1, 0).UnixMicro()}, true
	}
	if n < 10 || s[7] != '-' {
		return dateRange{}, false
	}
	day, ok := digits(s, 8, 2)
	if !ok || day < 1 || day > daysIn(year, month) {
		return dateRange{}, false
	}
	if n == 10 {
		lo := time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC)
		return dateRange{lo.UnixMicro(), lo.AddDate(0, 0, 1).UnixMicro()}, true
	}
	// A time: Thh:mm, then optional :ss and .fraction, then optional zone.
	if n < 16 || s[10] != 'T' || s[13] != ':' {
		return dateRange{}, false
	}
	hour, ok1 := digits(s, 11, 2)
	minute, ok2 := digits(s, 14, 2)
	if !ok1 || !ok2 || hour > 23 || minute > 59 {
		return dateRange{}, false
	}
	i := 16
	sec, micro := 0, 0
	width := int64(time.Minute / time.Microsecond)
	if i < n && s[i] == ':' {
		v, ok := digits(s, i+1, 2)
		if !ok || v > 60 {
			return dateRange{}, false
		}
		if v == 60 { // a leap second is read as the last second of the minute
			v = 59
		}
		sec = v
		i += 3
		width = int64(time.Second / time.Microsecond)
		if i < n && s[i] == '.' {
			i++
			start := i
			for i < n && s[i] >= '0' && s[i] <= '9' {
				i++
			}
			digitsN := i - start
			if digitsN == 0 {
				return dateRange{}, false
			}
			frac := 0
			for k := 0; k < 6; k++ {
				frac *= 10
				if k < digitsN {
					frac += int(s[start+k] - '0')
				}
			}
			micro = frac
			if digitsN >= 6 {
				width = 1
			} else {
				width = int64(math.Pow10(6 - digitsN))
			}
		}
	}
	loc := time.UTC
	if i < n {
		switch s[i] {
		case 'Z':
			if i+1 != n {
				return dateRange{}, false
			}
		case '+', '-':
			if n-i != 6 || s[i+3] != ':' {
				return dateRange{}, false
			}
			zh, ok1 := digits(s, i+1, 2)
			zm, ok2 := digits(s, i+4, 2)
			if !ok1 || !ok2 || zh > 14 || zm > 59 {
				return dateRange{}, false
			}
			off := zh*3600 + zm*60
			if s[i] == '-' {
				off = -off
			}
			loc = time.FixedZone("", off)
		default:
			return dateRange{}, false
		}
	}
	lo := time.Date(year, time.Month(month), day, hour, minute, sec, micro*1000, loc).UnixMicro()
	return dateRange{lo, lo + width}, true
}

// digits reads n decimal digits at s[i:].
func digits(s string, i, n int) (int, bool) {
	if i+n > len(s) {
		return 0, false
	}
	v := 0
	for k := i; k < i+n; k++ {
		c := s[k]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// periodRange returns the range of a FHIR Period given its start and end
// (either may be empty, meaning open).
func periodRange(start, end string) (dateRange, bool) {
	r := dateRange{math.MinInt64, math.MaxInt64}
	if start != "" {
		s, ok := parseDateRange(start)
		if !ok {
			return r, false
		}
		r.lo = s.lo
	}
	if end != "" {
		e, ok := parseDateRange(end)
		if !ok {
			return r, false
		}
		r.hi = e.hi
	}
	return r, true
}

// instantFormat is how the server writes meta.lastUpdated (an R4 instant,
// millisecond precision, UTC).
const instantFormat = "2006-01-02T15:04:05.000Z07:00"
