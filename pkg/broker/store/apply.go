package store

import (
	"context"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

type opKind uint8

const (
	opPut opKind = iota + 1
	opCreate
	opDelete
	opDeletePrefix
)

func (k opKind) String() string {
	switch k {
	case opPut:
		return "put"
	case opCreate:
		return "create"
	case opDelete:
		return "delete"
	case opDeletePrefix:
		return "delete-prefix"
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// Op is one write in an Apply transaction. Build it with OpPut, OpCreate,
// OpDelete or OpDeletePrefix; the zero Op is invalid.
type Op struct {
	kind  opKind
	key   string
	value []byte
}

// OpPut writes key unconditionally.
func OpPut(key string, value []byte) Op { return Op{kind: opPut, key: key, value: value} }

// OpCreate writes key and adds the condition that key does not exist yet:
// if it does, the whole transaction is not applied.
func OpCreate(key string, value []byte) Op { return Op{kind: opCreate, key: key, value: value} }

// OpDelete removes key (a no-op if it does not exist).
func OpDelete(key string) Op { return Op{kind: opDelete, key: key} }

// OpDeletePrefix removes every key starting with keyPrefix.
func OpDeletePrefix(keyPrefix string) Op { return Op{kind: opDeletePrefix, key: keyPrefix} }

func (o Op) String() string { return o.kind.String() + " " + o.key }

type condKind uint8

const (
	condAbsent condKind = iota + 1
	condExists
	condModRevision
)

// Cond is a precondition of an Apply transaction. Build it with IfAbsent,
// IfExists or IfModRevision; the zero Cond is invalid.
type Cond struct {
	kind condKind
	key  string
	rev  int64
}

// IfAbsent holds when key does not exist.
func IfAbsent(key string) Cond { return Cond{kind: condAbsent, key: key} }

// IfExists holds when key exists.
func IfExists(key string) Cond { return Cond{kind: condExists, key: key} }

// IfModRevision holds when key was last modified at rev (0: key absent).
// Pass KV.ModRevision from a read to guard a read-modify-write.
func IfModRevision(key string, rev int64) Cond {
	return Cond{kind: condModRevision, key: key, rev: rev}
}

func (c Cond) String() string {
	switch c.kind {
	case condAbsent:
		return "absent " + c.key
	case condExists:
		return "exists " + c.key
	case condModRevision:
		return fmt.Sprintf("mod-revision %s = %d", c.key, c.rev)
	}
	return fmt.Sprintf("cond(%d) %s", uint8(c.kind), c.key)
}

// Apply commits ops atomically, in one revision, if every cond (and the
// implicit condition of every OpCreate) holds; otherwise it changes
// nothing. ok reports whether the ops were applied; rev is the revision of
// the transaction, or the current revision when it was not applied.
//
// A key may appear in at most one op, and etcd limits the number of ops
// per transaction (128 by default).
func (s *Store) Apply(ctx context.Context, ops []Op, conds []Cond) (rev int64, ok bool, err error) {
	cmps := make([]clientv3.Cmp, 0, len(conds)+len(ops))
	for _, c := range conds {
		k := s.abs(c.key)
		switch {
		case c.key == "":
			return 0, false, fmt.Errorf("store: apply: condition %v: empty key", c)
		case c.kind == condAbsent:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
		case c.kind == condExists:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), ">", 0))
		case c.kind == condModRevision:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", c.rev))
		default:
			return 0, false, fmt.Errorf("store: apply: invalid condition %v", c)
		}
	}
	thens := make([]clientv3.Op, 0, len(ops))
	for _, o := range ops {
		if o.key == "" && o.kind != opDeletePrefix {
			return 0, false, fmt.Errorf("store: apply: %v: empty key", o)
		}
		k := s.abs(o.key)
		switch o.kind {
		case opPut:
			thens = append(thens, clientv3.OpPut(k, string(o.value)))
		case opCreate:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
			thens = append(thens, clientv3.OpPut(k, string(o.value)))
		case opDelete:
			thens = append(thens, clientv3.OpDelete(k))
		case opDeletePrefix:
			thens = append(thens, clientv3.OpDelete(k, clientv3.WithPrefix()))
		default:
			return 0, false, fmt.Errorf("store: apply: invalid op %v", o)
		}
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(thens...).Commit()
	if err != nil {
		return 0, false, fmt.Errorf("store: apply [%s]: %w", describe(ops), err)
	}
	return resp.Header.Revision, resp.Succeeded, nil
}

func describe(ops []Op) string {
	parts := make([]string, len(ops))
	for i, o := range ops {
		parts[i] = o.String()
	}
	return strings.Join(parts, ", ")
}
