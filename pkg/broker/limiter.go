package broker

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// joinLimiter rate-limits join attempts per source address; failed
// guesses at token secrets cost the guesser time, not the broker.
type joinLimiter struct {
	mu    sync.Mutex
	r     rate.Limit
	burst int
	now   func() time.Time
	per   map[string]*entry
}

type entry struct {
	l    *rate.Limiter
	seen time.Time
}

func newJoinLimiter(perSecond float64, burst int, now func() time.Time) *joinLimiter {
	return &joinLimiter{r: rate.Limit(perSecond), burst: burst, now: now, per: map[string]*entry{}}
}

func (j *joinLimiter) allow(host string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	now := j.now()
	e, ok := j.per[host]
	if !ok {
		// Bound memory: forget addresses idle for a while.
		if len(j.per) > 10000 {
			for h, old := range j.per {
				if now.Sub(old.seen) > 10*time.Minute {
					delete(j.per, h)
				}
			}
		}
		e = &entry{l: rate.NewLimiter(j.r, j.burst)}
		j.per[host] = e
	}
	e.seen = now
	return e.l.AllowN(now, 1)
}
