// Command vulnerable calls golang.org/x/text/language.ParseAcceptLanguage
// from x/text v0.3.7, which GO-2022-1059 affects (fixed in v0.3.8): the
// vulnerability audit must report it in source and binary mode.
package main

import (
	"fmt"
	"os"

	"golang.org/x/text/language"
)

func main() {
	tags, _, err := language.ParseAcceptLanguage(os.Getenv("LANG_HEADER"))
	fmt.Println(tags, err)
}
