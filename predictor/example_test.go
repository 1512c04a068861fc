package predictor_test

import (
	"fmt"

	"github.com/maskpredictor/maskpredictor/predictor"
)

// The embedded default model labels a name with no files at all.
func ExampleCRF_Predict() {
	m, err := predictor.DefaultModel()
	if err != nil {
		panic(err)
	}
	c, err := predictor.NewCRF(m, predictor.Limits{})
	if err != nil {
		panic(err)
	}
	p, err := c.Predict("3M Aura 9205+ N95")
	if err != nil {
		panic(err)
	}
	for i, tok := range p.Tokens {
		fmt.Println(tok, p.Labels[i])
	}
	fmt.Println(p.Components()["model"])
	// Output:
	// 3M brand
	// Aura model
	// 9205+ model
	// N95 filter_type
	// [Aura 9205+]
}

// When no model can be loaded the rule predictor answers, marked as such.
func ExampleRules_Predict() {
	r := predictor.DefaultRules(predictor.Limits{})
	p, _ := r.Predict("Acme KN95 Kids Ear Loops")
	fmt.Println(p.Labels, p.Fallback, p.Confidence)
	// Output: [brand filter_type size strap strap] true 0
}
