# Turns a file into a C array, at build time: cmake -DIN=FILE -DOUT=FILE.c
# -DNAME=symbol -DHEADER=path/of/its.h -P embed_file.cmake writes
#   const char NAME[] = {...};  const size_t NAME_len = ...;
# The admin page (core/router/admin_page.html) reaches the router this way,
# so the page stays an ordinary file to edit and the generated code is
# never checked in.
if(NOT IN OR NOT OUT OR NOT NAME OR NOT HEADER)
	message(FATAL_ERROR "usage: cmake -DIN=... -DOUT=... -DNAME=... -DHEADER=... -P embed_file.cmake")
endif()
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR bytes "${n} / 2")
# A line of C for each line of the file.
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1, " body "${hex}")
string(REPLACE "0x0a, " "0x0a,\n\t" body "${body}")
file(WRITE "${OUT}.tmp"
	"/* Generated from ${IN} by tools/embed_file.cmake: edit that file. */\n"
	"#include <stddef.h>\n\n#include \"${HEADER}\"\n\n"
	"const char ${NAME}[] = {\n\t${body}0x00};\nconst size_t ${NAME}_len = ${bytes};\n")
# Only a changed page rebuilds the object.
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
