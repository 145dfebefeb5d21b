WORD = "template"
