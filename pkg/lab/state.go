package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// StateFile is the name of the state file inside a lab's state directory.
const StateFile = "state.json"

// DefaultStateRoot holds the state directories of labs by default.
const DefaultStateRoot = "/run/weft-lab"

const stateVersion = 1

// DefaultStateDir is where lab name keeps its state unless told otherwise.
func DefaultStateDir(name string) string { return filepath.Join(DefaultStateRoot, name) }

// State is what a lab made, written as JSON to <state dir>/state.json so
// that `down` can remove it and other commands can find it.
type State struct {
	Version   int       `json:"version"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt"`
	// Ready is set once every step of the plan has been applied.
	Ready bool `json:"ready"`
	// Topology is the lab's topology, defaults applied; the plan is
	// recomputed from it.
	Topology Topology `json:"topology"`
	// Namespaces made so far, in creation order.
	Namespaces []string `json:"namespaces"`
	// Processes started in the lab (see [Lab.StartProcess]).
	Processes []Process `json:"processes,omitempty"`
}

// Process is a process the lab started and `down` stops.
type Process struct {
	Name      string   `json:"name"`
	Target    string   `json:"target"`
	Namespace string   `json:"namespace"`
	PID       int      `json:"pid"`
	Start     uint64   `json:"start,omitempty"` // see [Proc]
	Args      []string `json:"args"`
	Log       string   `json:"log"`
}

// Proc identifies the process for the Kernel.
func (p Process) Proc() Proc { return Proc{PID: p.PID, Start: p.Start} }

// readState loads the state in dir; it returns an error wrapping
// os.ErrNotExist when there is none.
func readState(dir string) (*State, error) {
	path := filepath.Join(dir, StateFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read lab state: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("read lab state %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("read lab state %s: version %d, want %d", path, st.Version, stateVersion)
	}
	return &st, nil
}

// writeState replaces the state file atomically.
func writeState(dir string, st *State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode lab state: %w", err)
	}
	tmp, err := os.CreateTemp(dir, StateFile+".*")
	if err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write lab state: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, StateFile)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write lab state: %w", err)
	}
	return nil
}
