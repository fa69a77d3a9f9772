package delivery

import (
	"context"
	"fmt"
	"time"

	// Quiet hours read IANA time zones: the binary carries them, as the
	// scratch image has no zoneinfo.
	_ "time/tzdata"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/maxloyalty/notify/internal/store"
)

// Quiet hours are checked when a delivery is about to be sent, not when it
// is queued: a delivery due in them (at once, after its unseen delay, or a
// digest's summary) is snoozed until they end in the user's time zone, and
// checked again then (the user may have seen it meanwhile, or changed the
// hours). CRITICAL alerts are never held.

// QuietEnd returns when the quiet hours q in loc that contain t end, or the
// zero time when t is not in quiet hours. Each day's hours start at
// q.Start and end at q.End on the same day, or the next when End is before
// Start. A wall-clock time that a daylight-saving change skips is read as
// the first instant after the skip (02:30 on a day that jumps from 02:00 to
// 03:00 is 03:00); one that occurs twice is read as its first occurrence.
func QuietEnd(t time.Time, loc *time.Location, q store.QuietHours) time.Time {
	if q.Start == q.End {
		return time.Time{}
	}
	lt := t.In(loc)
	y, m, d := lt.Date()
	// The hours that started yesterday may still run; then today's.
	for _, day := range []int{-1, 0} {
		start := wallTime(y, m, d+day, q.Start, loc)
		endDay := d + day
		if q.End < q.Start {
			endDay++
		}
		end := wallTime(y, m, endDay, q.End, loc)
		if !t.Before(start) && t.Before(end) {
			return end
		}
	}
	return time.Time{}
}

// wallTime is the first instant at or after the wall-clock time minutes
// after midnight of day y-m-d in loc.
func wallTime(y int, m time.Month, d, minutes int, loc *time.Location) time.Time {
	h, mi := minutes/60, minutes%60
	t := time.Date(y, m, d, h, mi, 0, 0, loc)
	if t.Hour() != h || t.Minute() != mi {
		// Skipped by a change of offset: time.Date gave an instant of one
		// of the two zones; the first instant at or after the wall time is
		// the change itself.
		start, end := t.ZoneBounds()
		got := time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), 0, 0, time.UTC)
		if got.Before(time.Date(y, m, d, h, mi, 0, 0, time.UTC)) {
			return end
		}
		return start
	}
	// A wall time that occurs twice (the offset went back): the earlier
	// occurrence is in the zone before this one.
	start, _ := t.ZoneBounds()
	if !start.IsZero() {
		_, before := start.Add(-time.Nanosecond).Zone()
		_, now := t.Zone()
		if before > now {
			if earlier := t.Add(-time.Duration(before-now) * time.Second); earlier.Before(start) {
				return earlier
			}
		}
	}
	return t
}

// quietEndFor returns when the user's quiet hours end if now is in them,
// and how to say so.
func (q *Queue) quietEndFor(ctx context.Context, user string, now time.Time) (time.Time, string, error) {
	p, err := q.st.Preferences(ctx, user)
	if err != nil || p.Quiet == nil {
		return time.Time{}, "", err
	}
	loc := time.UTC
	if p.TimeZone != "" {
		if loc, err = time.LoadLocation(p.TimeZone); err != nil {
			// Validated when stored; a zone this binary no longer knows
			// holds nothing.
			q.log.Warn("delivery: unknown time zone in preferences", "user", user, "zone", p.TimeZone)
			return time.Time{}, "", nil
		}
	}
	end := QuietEnd(now, loc, *p.Quiet)
	if end.IsZero() {
		return end, "", nil
	}
	return end, fmt.Sprintf("held by quiet hours until %s %s (%s)", end.In(loc).Format("15:04"), loc.String(), end.UTC().Format(time.RFC3339)), nil
}

// hold applies quiet hours and throttles to a delivery about to be sent;
// it may change a (a throttle folds the sends held back into it). done
// is true when the job ends here, with the error River must get: a snooze
// until the quiet hours end, nil when the delivery was held by a throttle.
func (q *Queue) hold(ctx context.Context, row *rivertype.JobRow, a *deliverArgs, step store.Status) (done bool, err error) {
	if !a.Critical {
		now := q.now()
		end, detail, err := q.quietEndFor(ctx, a.User, now)
		if err != nil {
			return true, q.internal(ctx, row, step, err)
		}
		if !end.IsZero() {
			step.State, step.Detail = StateScheduled, detail
			if err := q.finish(ctx, step, nil); err != nil {
				return true, err
			}
			return true, river.JobSnooze(max(end.Sub(now), time.Second))
		}
	}
	return q.throttle(ctx, row, a, step)
}
