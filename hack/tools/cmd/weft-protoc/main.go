// Command weft-protoc is a minimal stand-in for protoc: it compiles .proto
// files with github.com/bufbuild/protocompile (pure Go, the compiler inside
// buf) and runs protoc plugins (protoc-gen-go, protoc-gen-go-grpc, ...) over
// the result through the standard plugin protocol (a CodeGeneratorRequest on
// stdin, a CodeGeneratorResponse on stdout), then writes the files the
// plugins return.
//
// Usage:
//
//	weft-protoc -I pkg/apis \
//	    -plugin .cache/tools/bin/protoc-gen-go=paths=source_relative \
//	    -plugin .cache/tools/bin/protoc-gen-go-grpc=paths=source_relative \
//	    -out pkg/apis broker/v1alpha1/broker.proto
//
// The well-known types (google/protobuf/*.proto) are built in.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/linker"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/pluginpb"
)

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// plugin is one plugin invocation: the executable and its parameter string.
type plugin struct {
	path  string
	param string
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "weft-protoc: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		importPaths listFlag
		plugins     listFlag
		out         string
	)
	flag.Var(&importPaths, "I", "import path (repeatable)")
	flag.Var(&plugins, "plugin", "plugin as PATH[=PARAMETER] (repeatable)")
	flag.StringVar(&out, "out", ".", "output directory for generated files")
	flag.Parse()
	files := flag.Args()
	if len(files) == 0 {
		return errors.New("no .proto files given")
	}
	if len(plugins) == 0 {
		return errors.New("no -plugin given")
	}
	if len(importPaths) == 0 {
		importPaths = listFlag{"."}
	}

	compiled, err := compile(importPaths, files)
	if err != nil {
		return err
	}
	req := request(compiled, files)
	for _, spec := range plugins {
		p := plugin{path: spec}
		if i := strings.IndexByte(spec, '='); i >= 0 {
			p.path, p.param = spec[:i], spec[i+1:]
		}
		req.Parameter = proto.String(p.param)
		if p.param == "" {
			req.Parameter = nil
		}
		resp, err := runPlugin(p, req)
		if err != nil {
			return err
		}
		if err := write(out, resp); err != nil {
			return fmt.Errorf("plugin %s: %w", filepath.Base(p.path), err)
		}
	}
	return nil
}

// compile parses and links files with full source info (comments are carried
// into the generated code).
func compile(importPaths, files []string) (linker.Files, error) {
	c := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
			ImportPaths: importPaths,
		}),
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	compiled, err := c.Compile(context.Background(), files...)
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	return compiled, nil
}

// request builds the CodeGeneratorRequest: every file and its transitive
// imports, dependencies first, as protoc does.
func request(compiled linker.Files, files []string) *pluginpb.CodeGeneratorRequest {
	req := &pluginpb.CodeGeneratorRequest{FileToGenerate: files}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := 0; i < imports.Len(); i++ {
			add(imports.Get(i).FileDescriptor)
		}
		req.ProtoFile = append(req.ProtoFile, protodesc.ToFileDescriptorProto(fd))
	}
	for _, f := range compiled {
		add(f)
	}
	return req
}

// runPlugin executes one plugin and decodes its response.
func runPlugin(p plugin, req *pluginpb.CodeGeneratorRequest) (*pluginpb.CodeGeneratorResponse, error) {
	in, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("marshal request for %s: %w", p.path, err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(p.path)
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("run %s: %w: %s", p.path, err, strings.TrimSpace(stderr.String()))
	}
	resp := &pluginpb.CodeGeneratorResponse{}
	if err := proto.Unmarshal(stdout.Bytes(), resp); err != nil {
		return nil, fmt.Errorf("decode response of %s: %w", p.path, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("%s: %s", p.path, resp.GetError())
	}
	return resp, nil
}

// write stores the generated files under out, refusing paths that escape it
// and insertion points (which no plugin used here emits).
func write(out string, resp *pluginpb.CodeGeneratorResponse) error {
	for _, f := range resp.File {
		name := f.GetName()
		if f.GetInsertionPoint() != "" {
			return fmt.Errorf("file %s: insertion points are not supported", name)
		}
		if !filepath.IsLocal(name) {
			return fmt.Errorf("file %q: path escapes the output directory", name)
		}
		dst := filepath.Join(out, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("file %s: %w", name, err)
		}
		if err := os.WriteFile(dst, []byte(f.GetContent()), 0o644); err != nil {
			return fmt.Errorf("file %s: %w", name, err)
		}
		fmt.Fprintf(os.Stderr, "[generate] wrote %s\n", dst)
	}
	return nil
}
