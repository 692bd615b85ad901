package etcdtest_test

import (
	"testing"
	"time"

	"github.com/weftnet/weft/internal/etcdtest"
)

// TestStartAndKillLeader checks the launcher itself: three members agree
// on a leader, and after the leader is killed the two survivors elect
// another one.
func TestStartAndKillLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd processes: skipped with -short")
	}
	c := etcdtest.Start(t)
	if len(c.Members) != etcdtest.Size || len(c.Endpoints()) != etcdtest.Size {
		t.Fatalf("%d members, %d endpoints; want %d", len(c.Members), len(c.Endpoints()), etcdtest.Size)
	}
	old, err := c.KillLeader()
	if err != nil {
		t.Fatal(err)
	}
	if old.Alive() {
		t.Fatalf("%s still alive after Kill", old.Name)
	}
	next, err := c.WaitLeader(15 * time.Second)
	if err != nil {
		t.Fatalf("no new leader: %v\n%s", err, c.Logs())
	}
	if next == old {
		t.Fatalf("leader is still the killed member %s", old.Name)
	}
}
