# Microsoft SEAL 4.1.2 (MIT), the homomorphic-encryption library behind protocols/he.py.
#
# SEAL has no Debian package and no wheel that ships its C++ headers; the source
# distribution of pyfhel 3.5.0 on PyPI carries SEAL 4.1.2's sources (Pyfhel/backend/SEAL).
# We fetch that archive (pinned by version and SHA-256), build SEAL once as a static,
# position-independent library without optional dependencies, install it under
# build/seal-4.1.2/install and link it into pi_native. A later configure finds the install
# and builds nothing. See docs/he.md for why this route and not a Python wheel.
#
# PI_SEAL_SDIST (environment): a local copy of the archive, for machines without PyPI
# access; its hash is checked like a download's.

set(PI_SEAL_VERSION 4.1.2)
set(PI_SEAL_SDIST_NAME pyfhel-3.5.0.tar.gz)
set(PI_SEAL_SDIST_URL
    "https://files.pythonhosted.org/packages/e8/4f/228e4196c08f48c188b9796bc2d60c57e2b227bed45faa1ccfed7e20b965/${PI_SEAL_SDIST_NAME}")
set(PI_SEAL_SDIST_SHA256 0375b83b5a83026924f59db25c4efa9f27e1e8a66d004658f4d24195986a04b6)
set(PI_SEAL_ROOT ${CMAKE_CURRENT_SOURCE_DIR}/build/seal-${PI_SEAL_VERSION})
set(PI_SEAL_PREFIX ${PI_SEAL_ROOT}/install)

if(NOT EXISTS ${PI_SEAL_PREFIX}/lib/cmake/SEAL-4.1/SEALConfig.cmake)
  set(archive ${PI_SEAL_ROOT}/${PI_SEAL_SDIST_NAME})
  if(DEFINED ENV{PI_SEAL_SDIST})
    configure_file($ENV{PI_SEAL_SDIST} ${archive} COPYONLY)
  elseif(NOT EXISTS ${archive})
    message(STATUS "SEAL: downloading ${PI_SEAL_SDIST_NAME} from PyPI")
    file(DOWNLOAD ${PI_SEAL_SDIST_URL} ${archive}.part STATUS status TLS_VERIFY ON)
    list(GET status 0 code)
    if(NOT code EQUAL 0)
      file(REMOVE ${archive}.part)
      message(FATAL_ERROR "SEAL: download of ${PI_SEAL_SDIST_URL} failed (${status}); "
                          "put the file somewhere and set PI_SEAL_SDIST=/path/to/${PI_SEAL_SDIST_NAME}")
    endif()
    file(RENAME ${archive}.part ${archive})
  endif()
  file(SHA256 ${archive} digest)
  if(NOT digest STREQUAL PI_SEAL_SDIST_SHA256)
    file(REMOVE ${archive})
    message(FATAL_ERROR "SEAL: ${PI_SEAL_SDIST_NAME} has SHA-256 ${digest}, expected ${PI_SEAL_SDIST_SHA256}; "
                        "removed it, configure again to re-download")
  endif()

  # A clean source and build tree every time: a half-finished earlier attempt is discarded.
  file(REMOVE_RECURSE ${PI_SEAL_ROOT}/src ${PI_SEAL_ROOT}/build ${PI_SEAL_PREFIX})
  file(ARCHIVE_EXTRACT INPUT ${archive} DESTINATION ${PI_SEAL_ROOT}/src
       PATTERNS pyfhel-3.5.0/Pyfhel/backend/SEAL)
  set(seal_src ${PI_SEAL_ROOT}/src/pyfhel-3.5.0/Pyfhel/backend/SEAL)
  cmake_host_system_information(RESULT cores QUERY NUMBER_OF_PHYSICAL_CORES)
  if(NOT cores OR cores LESS 1)
    set(cores 2)
  endif()
  message(STATUS "SEAL: building ${PI_SEAL_VERSION} once into ${PI_SEAL_PREFIX} (a few minutes; log in ${PI_SEAL_ROOT}/build.log)")
  execute_process(
    COMMAND ${CMAKE_COMMAND} -S ${seal_src} -B ${PI_SEAL_ROOT}/build
            -G ${CMAKE_GENERATOR} -DCMAKE_MAKE_PROGRAM=${CMAKE_MAKE_PROGRAM}
            -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}
            -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=${PI_SEAL_PREFIX} -DCMAKE_INSTALL_LIBDIR=lib
            -DBUILD_SHARED_LIBS=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON
            -DSEAL_BUILD_DEPS=OFF -DSEAL_USE_MSGSL=OFF -DSEAL_USE_ZLIB=OFF -DSEAL_USE_ZSTD=OFF
            -DSEAL_USE_INTEL_HEXL=OFF -DSEAL_BUILD_EXAMPLES=OFF -DSEAL_BUILD_TESTS=OFF
            -DSEAL_BUILD_BENCH=OFF -DSEAL_BUILD_SEAL_C=OFF
            # Kept ON deliberately: a transparent result would be a plaintext; he_server.cpp
            # never produces one (every reply starts from a public-key encryption of zero).
            -DSEAL_THROW_ON_TRANSPARENT_CIPHERTEXT=ON
            # protocols/he.py bounds fresh errors by 21: the centered binomial sampler.
            -DSEAL_USE_GAUSSIAN_NOISE=OFF
    OUTPUT_FILE ${PI_SEAL_ROOT}/configure.log ERROR_FILE ${PI_SEAL_ROOT}/configure.log
    RESULT_VARIABLE rc)
  if(rc EQUAL 0)
    execute_process(
      COMMAND ${CMAKE_COMMAND} --build ${PI_SEAL_ROOT}/build --target install --parallel ${cores}
      OUTPUT_FILE ${PI_SEAL_ROOT}/build.log ERROR_FILE ${PI_SEAL_ROOT}/build.log
      RESULT_VARIABLE rc)
  endif()
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "SEAL: build failed (${rc}); see ${PI_SEAL_ROOT}/configure.log and build.log")
  endif()
  file(REMOVE_RECURSE ${PI_SEAL_ROOT}/src ${PI_SEAL_ROOT}/build)
endif()

find_package(SEAL ${PI_SEAL_VERSION} EXACT REQUIRED CONFIG PATHS ${PI_SEAL_PREFIX} NO_DEFAULT_PATH)
target_link_libraries(pi_native PRIVATE SEAL::seal)
