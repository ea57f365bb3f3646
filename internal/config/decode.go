package config

import (
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// KeyError is a configuration problem tied to one key.
type KeyError struct {
	File   string
	Key    string // dotted path: ldap.upstream.urls
	Line   int    // 0 when unknown (a value set by a flag)
	Reason string
}

func (e *KeyError) Error() string {
	where := e.File
	if where == "" {
		where = "config"
	}
	if e.Line > 0 {
		where = fmt.Sprintf("%s:%d", where, e.Line)
	}
	return fmt.Sprintf("%s: %s: %s", where, e.Key, e.Reason)
}

// decodeStrict fills out from the YAML document in node, refusing keys that
// out's type does not have and naming the key of every bad value. yaml.v3's
// own KnownFields reports only a line and a Go type name; a person editing
// the file needs the key.
func decodeStrict(file string, node *yaml.Node, out any) error {
	if node.Kind == yaml.DocumentNode {
		if len(node.Content) == 0 {
			return nil
		}
		node = node.Content[0]
	}
	return walk(file, "", node, reflect.ValueOf(out).Elem())
}

func walk(file, path string, node *yaml.Node, v reflect.Value) error {
	if node.Kind == yaml.AliasNode {
		node = node.Alias
	}
	// Types with their own YAML decoding (Duration, ByteSize) decode whole.
	if v.CanAddr() {
		if _, ok := v.Addr().Interface().(yaml.Unmarshaler); ok {
			return decodeLeaf(file, path, node, v)
		}
	}
	switch v.Kind() {
	case reflect.Struct:
		if node.Kind == yaml.ScalarNode && node.Tag == "!!null" {
			return nil
		}
		if node.Kind != yaml.MappingNode {
			return &KeyError{File: file, Key: orRoot(path), Line: node.Line, Reason: "must be a mapping of keys to values"}
		}
		fields := map[string]reflect.Value{}
		var names []string
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			fields[tag] = v.Field(i)
			names = append(names, tag)
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, val := node.Content[i], node.Content[i+1]
			key := join(path, k.Value)
			if seen[k.Value] {
				return &KeyError{File: file, Key: key, Line: k.Line, Reason: "given twice"}
			}
			seen[k.Value] = true
			f, ok := fields[k.Value]
			if !ok {
				return &KeyError{File: file, Key: key, Line: k.Line,
					Reason: fmt.Sprintf("unknown key (known here: %s)", strings.Join(names, ", "))}
			}
			if err := walk(file, key, val, f); err != nil {
				return err
			}
		}
		return nil
	case reflect.Pointer:
		if node.Kind == yaml.ScalarNode && node.Tag == "!!null" {
			return nil
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return walk(file, path, node, v.Elem())
	case reflect.Slice:
		if node.Kind == yaml.ScalarNode && node.Tag == "!!null" {
			return nil
		}
		if node.Kind != yaml.SequenceNode {
			return &KeyError{File: file, Key: path, Line: node.Line, Reason: "must be a list"}
		}
		s := reflect.MakeSlice(v.Type(), len(node.Content), len(node.Content))
		for i, item := range node.Content {
			if err := walk(file, fmt.Sprintf("%s[%d]", path, i), item, s.Index(i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	}
	return decodeLeaf(file, path, node, v)
}

func decodeLeaf(file, path string, node *yaml.Node, v reflect.Value) error {
	if node.Kind != yaml.ScalarNode {
		return &KeyError{File: file, Key: path, Line: node.Line, Reason: "must be a single value"}
	}
	if err := node.Decode(v.Addr().Interface()); err != nil {
		reason := err.Error()
		if te, ok := err.(*yaml.TypeError); ok && len(te.Errors) > 0 {
			reason = te.Errors[0]
			if i := strings.Index(reason, ": "); i >= 0 && strings.HasPrefix(reason, "line ") {
				reason = reason[i+2:]
			}
		}
		return &KeyError{File: file, Key: path, Line: node.Line, Reason: reason}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orRoot(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}
