package spec

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // time zones in cron triggers must not depend on the host's zoneinfo

	"github.com/dustin/go-humanize"
	"github.com/robfig/cron/v3"
)

func formatInt(i int64) string { return strconv.FormatInt(i, 10) }

// ParseDuration parses a Go duration ("1m30s", "250ms") and also accepts
// days and weeks ("7d", "2w", "1d12h"), which retention periods need.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	var total time.Duration
	rest := s
	for _, unit := range []struct {
		suffix string
		d      time.Duration
	}{{"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour}} {
		i := strings.Index(rest, unit.suffix)
		if i < 0 {
			continue
		}
		n, err := strconv.ParseUint(rest[:i], 10, 32)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		total += time.Duration(n) * unit.d
		rest = rest[i+1:]
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		if d < 0 {
			return 0, fmt.Errorf("negative duration %q", s)
		}
		total += d
	}
	return total, nil
}

// ParseSizeMiB parses a memory size in MiB: a bare number is MiB, a string
// may carry a unit ("512MiB", "1GiB", "256MB").
func ParseSizeMiB(s string) (int, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 {
			return 0, fmt.Errorf("size must be positive")
		}
		return n, nil
	}
	b, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	const mib = 1 << 20
	if b < mib {
		return 0, fmt.Errorf("size %q is below 1 MiB", s)
	}
	return int((b + mib - 1) / mib), nil
}

// ParseSize parses a size in bytes. Like ParseSizeMiB, a bare number is
// MiB; a string may carry any unit go-humanize knows ("64KiB", "10MiB",
// "1GB", "512B").
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	const mib = 1 << 20
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n <= 0 {
			return 0, fmt.Errorf("size must be positive")
		}
		if n > math.MaxInt64/mib {
			return 0, fmt.Errorf("size %q is too large", s)
		}
		return n * mib, nil
	}
	b, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	if b == 0 {
		return 0, fmt.Errorf("size must be positive")
	}
	if b > math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(b), nil
}

// cronParser accepts five fields, or six with a leading seconds field, and
// the @hourly-style descriptors. A CRON_TZ= or TZ= prefix sets a time zone.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCron parses a cron schedule in the given time zone ("" is UTC),
// with ISC cron's rules for daylight saving time (cron.go).
func ParseCron(schedule, timezone string) (cron.Schedule, error) {
	if timezone != "" {
		if _, err := time.LoadLocation(timezone); err != nil {
			return nil, fmt.Errorf("unknown time zone %q", timezone)
		}
		if strings.HasPrefix(schedule, "CRON_TZ=") || strings.HasPrefix(schedule, "TZ=") {
			return nil, fmt.Errorf("the schedule sets a time zone and so does the timezone argument")
		}
		schedule = "CRON_TZ=" + timezone + " " + schedule
	} else if !strings.HasPrefix(schedule, "CRON_TZ=") && !strings.HasPrefix(schedule, "TZ=") {
		// "" is UTC, not the machine's zone (robfig/cron's default).
		schedule = "CRON_TZ=UTC " + schedule
	}
	s, err := cronParser.Parse(schedule)
	if err != nil {
		return nil, err
	}
	return withDST(schedule, s), nil
}

// ParseOffset parses a stream trigger's start offset: "first", "latest",
// a non-negative offset, or an RFC 3339 time.
func ParseOffset(s string) (Offset, error) {
	switch s {
	case "first", "earliest":
		return Offset{Kind: OffsetFirst}, nil
	case "latest":
		return Offset{Kind: OffsetLatest}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return Offset{}, fmt.Errorf("offset %d is negative", n)
		}
		return Offset{Kind: OffsetAt, At: n}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return Offset{Kind: OffsetTime, Time: t}, nil
	}
	return Offset{}, fmt.Errorf("invalid offset %q", s)
}

// httpMethods are the methods a route may use; "ANY" matches every method.
var httpMethods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true,
	"DELETE": true, "OPTIONS": true, "ANY": true,
}

// envNameRE is what a secret or env variable name must match.
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
