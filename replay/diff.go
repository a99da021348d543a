package replay

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/squallhq/squall/api"
)

// Diff compares two state documents of one key field by field — live, as
// the node serves it, and replayed, as Replay built it — and returns their
// differences, one readable line each ("window.max: live 95, replay 90"),
// sorted by field; none when they agree. Both are compared as the node
// encodes them in JSON, so a document read over HTTP and one built in
// process compare alike.
//
// Left out, because a replay cannot reproduce them: node, activated_at and
// last_event_at (wall-clock), and for absent rules last_seen and since
// (wall-clock too). Rules are matched by name.
func Diff(live, replayed *api.KeyState) ([]string, error) {
	a, err := tree(live)
	if err != nil {
		return nil, fmt.Errorf("replay: live state: %w", err)
	}
	b, err := tree(replayed)
	if err != nil {
		return nil, fmt.Errorf("replay: replayed state: %w", err)
	}
	var out []string
	diffValue("", a, b, &out)
	slices.Sort(out)
	return out, nil
}

// tree returns the JSON tree of st without the fields a replay cannot
// reproduce, its rules as an object keyed by rule name.
func tree(st *api.KeyState) (map[string]any, error) {
	if st == nil {
		return map[string]any{}, nil
	}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	delete(m, "node")
	delete(m, "activated_at")
	delete(m, "last_event_at")
	if rs, ok := m["rules"].([]any); ok {
		byName := make(map[string]any, len(rs))
		for i, r := range rs {
			rm, ok := r.(map[string]any)
			if !ok {
				byName[strconv.Itoa(i)] = r
				continue
			}
			if rm["kind"] == "absent" {
				delete(rm, "last_seen")
				delete(rm, "since")
			}
			name, _ := rm["rule"].(string)
			byName[name] = rm
		}
		m["rules"] = byName
	}
	return m, nil
}

// diffValue appends the differences between a and b, at path.
func diffValue(path string, a, b any, out *[]string) {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			break
		}
		keys := slices.Sorted(maps.Keys(av))
		for k := range bv {
			if _, ok := av[k]; !ok {
				keys = append(keys, k)
			}
		}
		for _, k := range keys {
			x, inA := av[k]
			y, inB := bv[k]
			switch {
			case !inA:
				*out = append(*out, fmt.Sprintf("%s: only in replay (%s)", join(path, k), show(y)))
			case !inB:
				*out = append(*out, fmt.Sprintf("%s: only live (%s)", join(path, k), show(x)))
			default:
				diffValue(join(path, k), x, y, out)
			}
		}
		return
	case []any:
		bv, ok := b.([]any)
		if !ok {
			break
		}
		if len(av) != len(bv) {
			*out = append(*out, fmt.Sprintf("%s: live has %d, replay %d", path, len(av), len(bv)))
		}
		for i := range min(len(av), len(bv)) {
			diffValue(path+"["+strconv.Itoa(i)+"]", av[i], bv[i], out)
		}
		return
	}
	if show(a) != show(b) {
		*out = append(*out, fmt.Sprintf("%s: live %s, replay %s", path, show(a), show(b)))
	}
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// show renders a JSON value compactly.
func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
