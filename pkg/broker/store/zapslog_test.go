package store

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
)

func TestZapToSlog(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	zl := newZapLogger(l, nil, nil).Named("etcd").With(zap.String("member", "m1"))
	zl.Info("chatty", zap.Int("n", 1))
	zl.Debug("chattier")
	zl.Warn("slow request", zap.Duration("took", 1500000000), zap.Error(errors.New("boom")), zap.Strings("urls", []string{"a", "b"}))
	zl.Error("failed", zap.Bool("fatal", false))

	got := strings.TrimSpace(buf.String())
	want := strings.Join([]string{
		`level=WARN msg="slow request" logger=etcd member=m1 error=boom took=1.5s urls="[a b]"`,
		`level=ERROR msg=failed logger=etcd member=m1 fatal=false`,
	}, "\n")
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}

	buf.Reset()
	newZapLogger(l, slog.LevelDebug, nil).Debug("now shown")
	if !strings.Contains(buf.String(), `level=DEBUG msg="now shown"`) {
		t.Fatalf("debug level not forwarded: %q", buf.String())
	}
	newZapLogger(nil, nil, nil).Error("discarded") // must not panic

	// While quiet, warnings and errors drop to info.
	buf.Reset()
	var quiet atomic.Bool
	ql := newZapLogger(l, slog.LevelInfo, &quiet)
	ql.Error("loud")
	quiet.Store(true)
	ql.Error("closing listener")
	ql.Warn("also closing")
	newZapLogger(l, nil, &quiet).Error("hidden at warn")
	want = "level=ERROR msg=loud\nlevel=INFO msg=\"closing listener\"\nlevel=INFO msg=\"also closing\""
	if got := strings.TrimSpace(buf.String()); got != want {
		t.Fatalf("quiet: got\n%s\nwant\n%s", got, want)
	}
}
