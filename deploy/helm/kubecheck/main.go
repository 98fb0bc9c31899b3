// kubecheck validates rendered Kubernetes manifests (helm template output) offline.
//
// Why not kubeconform: it needs the Kubernetes JSON schemas from the network at run time,
// and CI here has none. Instead every document is decoded STRICTLY into the typed API
// structs of k8s.io/api (the same Go types the API server's OpenAPI schema is generated
// from): an unknown or misspelt field, a wrong type, a duplicate field or an unknown
// apiVersion/kind fails. On top, the checks the API server would reject first and that a
// chart gets wrong most often: names, a workload's selector matching its pod labels,
// containers with images, probe ports that the container declares.
//
// Usage: kubecheck FILE... (or - for stdin). Exit 1 with one line per problem.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

func newDecoder() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, networkingv1.AddToScheme, policyv1.AddToScheme,
		rbacv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
}

func checkPod(where string, sel *metav1.LabelSelector, spec *corev1.PodTemplateSpec) []string {
	var out []string
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || sel == nil || s.Empty() {
		out = append(out, where+": missing or invalid selector")
	} else if !s.Matches(labels.Set(spec.Labels)) {
		out = append(out, where+": selector does not match the pod template's labels")
	}
	if len(spec.Spec.Containers) == 0 {
		out = append(out, where+": no containers")
	}
	for _, c := range spec.Spec.Containers {
		if c.Name == "" || c.Image == "" {
			out = append(out, where+": container without name or image")
		}
		ports := map[string]bool{}
		for _, p := range c.Ports {
			ports[p.Name] = true
			ports[fmt.Sprint(p.ContainerPort)] = true
		}
		for _, pr := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if pr != nil && pr.HTTPGet != nil && !ports[pr.HTTPGet.Port.String()] {
				out = append(out, fmt.Sprintf("%s: container %s probes port %s it does not declare", where, c.Name, pr.HTTPGet.Port.String()))
			}
		}
	}
	return out
}

func check(dec runtime.Decoder, doc []byte, where string) []string {
	obj, gvk, err := dec.Decode(doc, nil, nil)
	if err != nil {
		return []string{where + ": " + err.Error()}
	}
	where = fmt.Sprintf("%s %s", where, gvk.Kind)
	m, ok := obj.(metav1.Object)
	if !ok || m.GetName() == "" {
		return []string{where + ": no metadata.name"}
	}
	where += "/" + m.GetName()
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return checkPod(where, o.Spec.Selector, &o.Spec.Template)
	case *appsv1.StatefulSet:
		out := checkPod(where, o.Spec.Selector, &o.Spec.Template)
		if o.Spec.ServiceName == "" {
			out = append(out, where+": no serviceName")
		}
		return out
	case *batchv1.Job:
		// the Job controller generates the selector; the pod template must still be runnable
		out := checkPod(where, &metav1.LabelSelector{MatchLabels: o.Spec.Template.Labels}, &o.Spec.Template)
		if p := o.Spec.Template.Spec.RestartPolicy; p != corev1.RestartPolicyNever && p != corev1.RestartPolicyOnFailure {
			out = append(out, where+": restartPolicy must be Never or OnFailure")
		}
		return out
	case *policyv1.PodDisruptionBudget:
		if o.Spec.Selector == nil || (o.Spec.MinAvailable == nil) == (o.Spec.MaxUnavailable == nil) {
			return []string{where + ": needs a selector and exactly one of minAvailable/maxUnavailable"}
		}
	case *corev1.Service:
		if len(o.Spec.Ports) == 0 {
			return []string{where + ": no ports"}
		}
	}
	return nil
}

func main() {
	dec := newDecoder()
	var problems []string
	docs := 0
	for _, name := range os.Args[1:] {
		var r io.Reader = os.Stdin
		if name != "-" {
			f, err := os.Open(name)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			defer f.Close()
			r = f
		}
		yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
		for i := 0; ; i++ {
			doc, err := yr.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			docs++
			problems = append(problems, check(dec, doc, fmt.Sprintf("%s#%d", name, i))...)
		}
	}
	for _, p := range problems {
		fmt.Println(p)
	}
	fmt.Printf("kubecheck: %d documents, %d problems\n", docs, len(problems))
	if len(problems) > 0 || docs == 0 {
		os.Exit(1)
	}
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.Bytes()
}
