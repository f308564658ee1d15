// schema.go: `strictcheck -schema "APIVERSION KIND"` prints the JSON field types of that upstream Go type, read by
// reflection, so that kbootstrap can check an inventory's component_config against the real types in Python
// before any host is touched (kbootstrap/model/schemas/; tests/tools/strictcheck/gen-schemas.sh writes them).
//
// The output is a small type language: {"type": "object", "fields": {json name: type}} for a struct (inline and
// embedded structs merged), {"type": "map", "values": type}, {"type": "array", "items": type}, and the scalars
// boolean, string, bytes, number, {"type": "integer", "bits": N, "unsigned": bool}, plus the types with their own
// JSON form: duration (metav1.Duration), durationorinteger (logs TimeOrMetaDuration), quantity (resource.Quantity
// and QuantityValue), time, intorstring; "any" for the rest.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
)

type node map[string]any

var own = map[string]string{
	"k8s.io/apimachinery/pkg/apis/meta/v1.Duration":      "duration",
	"k8s.io/apimachinery/pkg/api/resource.Quantity":      "quantity",
	"k8s.io/apimachinery/pkg/api/resource.QuantityValue": "quantity",
	// logging.flushFrequency: a duration string, or an integer of nanoseconds
	"k8s.io/component-base/logs/api/v1.TimeOrMetaDuration": "durationorinteger",
	"k8s.io/apimachinery/pkg/apis/meta/v1.Time":            "time",
	"k8s.io/apimachinery/pkg/apis/meta/v1.MicroTime":       "time",
	"k8s.io/apimachinery/pkg/util/intstr.IntOrString":      "intorstring",
	"k8s.io/apimachinery/pkg/runtime.RawExtension":         "any",
	"k8s.io/apimachinery/pkg/apis/meta/v1.FieldsV1":        "any",
}

var unmarshaler = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()

func schemaOf(t reflect.Type, depth int) node {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if kind, ok := own[t.PkgPath()+"."+t.Name()]; ok {
		return node{"type": kind}
	}
	if depth > 20 {
		return node{"type": "any"}
	}
	if t.Kind() != reflect.Struct && reflect.PointerTo(t).Implements(unmarshaler) {
		return node{"type": "any"} // a JSON form of its own that this table does not know: not checked
	}
	switch t.Kind() {
	case reflect.Bool:
		return node{"type": "boolean"}
	case reflect.String:
		return node{"type": "string"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return node{"type": "integer", "bits": t.Bits(), "unsigned": false}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return node{"type": "integer", "bits": t.Bits(), "unsigned": true}
	case reflect.Float32, reflect.Float64:
		return node{"type": "number"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return node{"type": "bytes"}
		}
		return node{"type": "array", "items": schemaOf(t.Elem(), depth+1)}
	case reflect.Map:
		return node{"type": "map", "values": schemaOf(t.Elem(), depth+1)}
	case reflect.Struct:
		if reflect.PointerTo(t).Implements(unmarshaler) {
			return node{"type": "any"}
		}
		fields := node{}
		addFields(t, fields, depth)
		return node{"type": "object", "fields": fields}
	}
	return node{"type": "any"}
}

func addFields(t reflect.Type, fields node, depth int) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if (f.Anonymous && name == "") || strings.Contains(","+opts+",", ",inline,") {
			if ft.Kind() == reflect.Struct {
				addFields(ft, fields, depth+1)
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = schemaOf(f.Type, depth+1)
	}
}

func printSchema(key string) {
	newObj, ok := kinds[key]
	if !ok {
		fmt.Fprintf(os.Stderr, "unsupported %q (supported: %s)\n", key, strings.Join(supported(), ", "))
		os.Exit(2)
	}
	out, err := json.MarshalIndent(schemaOf(reflect.TypeOf(newObj()), 0), "", " ")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println(string(out))
}
