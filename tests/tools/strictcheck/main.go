// strictcheck strictly decodes Kubernetes YAML files into the real upstream Go types.
//
// Usage: strictcheck FILE...
//        strictcheck -schema APIVERSION/KIND   (the type's fields as JSON: schema.go)
//
// Each YAML document is routed by apiVersion+kind to its upstream type and decoded the way
// the API machinery's strict mode does it: duplicate keys, unknown fields and wrongly-cased
// field names are errors, and so is a value of the wrong type or format (durations,
// quantities, ...). Unknown apiVersion/kind pairs are refused. On success one line per
// document is printed: "OK<TAB>FILE<TAB>APIVERSION<TAB>KIND". Exit status: 0 all good,
// 1 some document failed, 2 usage or I/O error.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"
	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	kubeschedulerv1 "k8s.io/kube-scheduler/config/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// kinds maps "apiVersion kind" to a constructor of the upstream type.
var kinds = map[string]func() any{
	"kubelet.config.k8s.io/v1beta1 KubeletConfiguration":        func() any { return &kubeletv1beta1.KubeletConfiguration{} },
	"kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration":   func() any { return &kubeproxyv1alpha1.KubeProxyConfiguration{} },
	"apiserver.config.k8s.io/v1 EncryptionConfiguration":        func() any { return &apiserverv1.EncryptionConfiguration{} },
	"audit.k8s.io/v1 Policy":                                    func() any { return &auditv1.Policy{} },
	"v1 Pod":                                                    func() any { return &corev1.Pod{} },
	"v1 Config":                                                 func() any { return &clientcmdv1.Config{} },
	"kubescheduler.config.k8s.io/v1 KubeSchedulerConfiguration": func() any { return &kubeschedulerv1.KubeSchedulerConfiguration{} },
	"rbac.authorization.k8s.io/v1 ClusterRoleBinding":           func() any { return &rbacv1.ClusterRoleBinding{} },
	"rbac.authorization.k8s.io/v1 ClusterRole":                  func() any { return &rbacv1.ClusterRole{} },
	"rbac.authorization.k8s.io/v1 Role":                         func() any { return &rbacv1.Role{} },
	"rbac.authorization.k8s.io/v1 RoleBinding":                  func() any { return &rbacv1.RoleBinding{} },
	"v1 ConfigMap":                                              func() any { return &corev1.ConfigMap{} },
}

func checkDoc(doc []byte) (apiVersion, kind string, err error) {
	// apiVersion/kind first, leniently, so that every later error can name them.
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	loose, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return "", "", err
	}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(loose, &tm); err != nil {
		return "", "", fmt.Errorf("reading apiVersion/kind: %w", err)
	}
	// YAML -> JSON again, now failing on duplicate keys (as the API server's strict YAML
	// decoding does).
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return tm.APIVersion, tm.Kind, err
	}
	newObj, ok := kinds[tm.APIVersion+" "+tm.Kind]
	if !ok {
		return tm.APIVersion, tm.Kind, fmt.Errorf("unsupported apiVersion/kind %q/%q (supported: %s)",
			tm.APIVersion, tm.Kind, strings.Join(supported(), ", "))
	}
	obj := newObj()
	// Case-sensitive field matching; unknown and duplicate fields reported, as in
	// k8s.io/apimachinery's strict serializer.
	strictErrs, err := kjson.UnmarshalStrict(js, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return tm.APIVersion, tm.Kind, err
	}
	if len(strictErrs) > 0 {
		msgs := make([]string, len(strictErrs))
		for i, e := range strictErrs {
			msgs[i] = e.Error()
		}
		return tm.APIVersion, tm.Kind, errors.New(strings.Join(msgs, "; "))
	}
	return tm.APIVersion, tm.Kind, nil
}

func supported() []string {
	out := make([]string, 0, len(kinds))
	for k := range kinds {
		out = append(out, strings.Replace(k, " ", "/", 1))
	}
	sort.Strings(out)
	return out
}

func checkFile(path string) (failed bool, ioErr error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	n := 0
	for {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return false, fmt.Errorf("%s: splitting documents: %w", path, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		n++
		av, k, err := checkDoc(doc)
		if err != nil {
			// One line per failure: multi-line messages (YAML errors) are joined.
			msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", " ; ")), " ")
			fmt.Fprintf(os.Stderr, "FAIL\t%s\tdocument %d (%s/%s): %s\n", path, n, av, k, msg)
			failed = true
			continue
		}
		fmt.Printf("OK\t%s\t%s\t%s\n", path, av, k)
	}
	if n == 0 {
		fmt.Fprintf(os.Stderr, "FAIL\t%s\tno YAML document\n", path)
		failed = true
	}
	return failed, nil
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("---")) {
			b.Write(line)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" {
		fmt.Fprintf(os.Stderr, "usage: %s FILE...\nsupported kinds: %s\n", os.Args[0], strings.Join(supported(), ", "))
		os.Exit(2)
	}
	if os.Args[1] == "--kinds" {
		fmt.Println(strings.Join(supported(), "\n"))
		return
	}
	if os.Args[1] == "-schema" && len(os.Args) == 3 {
		i := strings.LastIndex(os.Args[2], "/") // APIVERSION/KIND: the apiVersion may hold a "/" itself
		printSchema(os.Args[2][:max(i, 0)] + " " + os.Args[2][i+1:])
		return
	}
	status := 0
	for _, p := range os.Args[1:] {
		failed, err := checkFile(p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "ERROR\t%s\t%v\n", p, err)
			status = 2
			continue
		}
		if failed && status == 0 {
			status = 1
		}
	}
	os.Exit(status)
}
